import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { API_ROUTES, API_STAGE_NAME, routeArnPath } from '../lib/api';
import { ACCESS_LEVELS, FUNCTION_NAMES, FunctionName } from '../lib/config';
import { StoreTable, TABLE_READ_ACTIONS, TABLE_WRITE_ACTIONS } from '../lib/function';
import { Built, Statement, allPolicies, asList, buildStack, isReadOnlyAction, logicalId, references, resourcesOfType } from './support';

const built = buildStack();
const policies = allPolicies(built.json);

/** Allow statements of the identity policies attached to a function's role. */
function roleStatements(name: FunctionName): Statement[] {
  const roleId = logicalId(built, built.stack.functions[name].role);
  return policies
    .filter((policy) => policy.kind === 'identity' && policy.roles.includes(roleId))
    .flatMap((policy) => policy.statements)
    .filter((statement) => statement.Effect === 'Allow');
}

function actionsOn(statements: Statement[], resourceId: string): Set<string> {
  return new Set(
    statements
      .filter((statement) => asList(statement.Resource as unknown[]).some((resource) => references(resource, resourceId)))
      .flatMap((statement) => asList(statement.Action)),
  );
}

const STORE_TABLES = Object.keys(TABLE_READ_ACTIONS) as StoreTable[];
const tableIds = Object.fromEntries(STORE_TABLES.map((table) => [table, logicalId(built, built.stack.tables[table])])) as Record<StoreTable, string>;

/** Writes that change or remove an existing item, or write without a per-item condition. */
const NON_APPEND_WRITES = [
  'dynamodb:DeleteItem',
  'dynamodb:UpdateItem',
  'dynamodb:BatchWriteItem',
  'dynamodb:PartiQLInsert',
  'dynamodb:PartiQLUpdate',
  'dynamodb:PartiQLDelete',
];

/** Whether a statement's resource is the table (by reference or, for imported tables, by name), or everything. */
function coversTable(statement: Statement, table: { id?: string; name: string }): boolean {
  return asList(statement.Resource as unknown[]).some(
    (resource) =>
      resource === '*' ||
      (table.id !== undefined && references(resource, table.id)) ||
      (JSON.stringify(resource) ?? '').includes(`:table/${table.name}`),
  );
}

/** Every Allow on an append-only table that is not an append: [role or policy, table, action]. */
function nonAppendWrites(b: Built, tablePrefix: string): [string, string, string][] {
  const found: [string, string, string][] = [];
  for (const table of ['events', 'idempotency'] as const) {
    const construct = b.stack.tables[table];
    const id = construct.node.defaultChild ? logicalId(b, construct as never) : undefined;
    for (const policy of allPolicies(b.json).filter((p) => p.kind === 'identity')) {
      for (const statement of policy.statements.filter((s) => s.Effect === 'Allow' && coversTable(s, { id, name: `${tablePrefix}-${table}` }))) {
        for (const action of asList(statement.Action)) {
          if (NON_APPEND_WRITES.includes(action) || action === 'dynamodb:*' || action === '*') {
            found.push([policy.roles.join(',') || policy.holder, table, action]);
          }
        }
      }
    }
  }
  return found;
}
const WRITERS: FunctionName[] = ['signal-ingest', 'detection', 'evidence', 'confidence', 'promotion', 'sweeper', 'incident-api'];

describe('IAM: no wildcard writes anywhere', () => {
  it('no identity policy has a * in any action', () => {
    for (const policy of policies.filter((p) => p.kind === 'identity')) {
      for (const statement of policy.statements.filter((s) => s.Effect === 'Allow')) {
        for (const action of asList(statement.Action)) {
          assert.ok(!action.includes('*'), `${policy.holder} allows wildcard action ${action}`);
        }
      }
    }
  });

  it('no identity policy allows a write action on Resource *', () => {
    for (const policy of policies.filter((p) => p.kind === 'identity')) {
      for (const statement of policy.statements.filter((s) => s.Effect === 'Allow')) {
        if (asList(statement.Resource as unknown[]).includes('*')) {
          const writes = asList(statement.Action).filter((action) => !isReadOnlyAction(action));
          assert.deepEqual(writes, [], `${policy.holder} allows ${writes.join(', ')} on *`);
        }
      }
    }
  });

  it('resource policies allow no wildcard action but key administration by this account and account-scoped data keys for publishing services', () => {
    for (const policy of policies.filter((p) => p.kind === 'resource')) {
      for (const statement of policy.statements.filter((s) => s.Effect === 'Allow')) {
        for (const action of asList(statement.Action)) {
          if (!action.includes('*')) {
            continue;
          }
          const inKeyPolicy = built.json.Resources[policy.holder].Type === 'AWS::KMS::Key';
          // CDK's default key policy: the account root may administer the key, which delegates
          // key access to IAM policies in this account (the ones checked above).
          const isKeyAdmin = inKeyPolicy && action === 'kms:*' && JSON.stringify(statement.Principal).includes(':root');
          // Data-key generation (not a write) for a service publishing to an encrypted topic,
          // scoped to the topics it publishes to: the form AWS documents for SNS encryption.
          const isPublisherDataKey =
            inKeyPolicy &&
            action === 'kms:GenerateDataKey*' &&
            JSON.stringify(statement.Principal).includes('"Service"') &&
            JSON.stringify(statement.Condition).includes('kms:EncryptionContext:aws:sns:topicArn');
          assert.ok(isKeyAdmin || isPublisherDataKey, `${policy.holder} allows wildcard action ${action}`);
        }
      }
    }
  });

  it('with X-Ray on, the only writes on * are the two X-Ray actions that have no resource type', () => {
    const traced = allPolicies(buildStack({ tracing: 'true' }).json);
    const writesOnStar = new Set<string>();
    for (const policy of traced.filter((p) => p.kind === 'identity')) {
      for (const statement of policy.statements.filter((s) => s.Effect === 'Allow')) {
        if (asList(statement.Resource as unknown[]).includes('*')) {
          asList(statement.Action).filter((a) => !isReadOnlyAction(a)).forEach((a) => writesOnStar.add(a));
        }
      }
    }
    assert.deepEqual([...writesOnStar].sort(), ['xray:PutTelemetryRecords', 'xray:PutTraceSegments']);
  });

  it('every service principal allowed by a resource policy is scoped to a source or, in the key policy, to a topic (no confused deputy)', () => {
    for (const policy of policies.filter((p) => p.kind === 'resource')) {
      for (const statement of policy.statements.filter((s) => s.Effect === 'Allow')) {
        if (JSON.stringify(statement.Principal ?? {}).includes('"Service"')) {
          const condition = JSON.stringify(statement.Condition ?? {});
          const inKeyPolicy = built.json.Resources[policy.holder].Type === 'AWS::KMS::Key';
          assert.ok(
            inKeyPolicy
              ? condition.includes('kms:EncryptionContext:aws:sns:topicArn')
              : condition.includes('aws:SourceArn') || condition.includes('aws:SourceAccount'),
            `${policy.holder} lets ${JSON.stringify(statement.Principal)} act without a source condition`,
          );
        }
      }
    }
    for (const [id, permission] of resourcesOfType(built.json, 'AWS::Lambda::Permission')) {
      const props = permission.Properties!;
      assert.ok(props.SourceArn || props.SourceAccount, `${id} lets ${props.Principal} invoke from anywhere`);
    }
  });

  it('the same checks fail on a policy with a wildcard write (the check is not vacuous)', () => {
    const bad: Statement = { Effect: 'Allow', Action: ['dynamodb:Put*'], Resource: '*' };
    assert.ok(asList(bad.Action).some((action) => action.includes('*')));
    assert.ok(!isReadOnlyAction('dynamodb:PutItem'));
    assert.ok(isReadOnlyAction('dynamodb:GetItem'));
  });

  it('no function role carries a managed policy (AWSLambdaBasicExecutionRole writes any log group)', () => {
    for (const name of FUNCTION_NAMES) {
      const role = built.json.Resources[logicalId(built, built.stack.functions[name].role)];
      assert.equal(role.Properties!.ManagedPolicyArns, undefined, `${name} role has managed policies`);
    }
  });
});

describe('IAM: each function holds only what it needs', () => {
  it('stage functions, ingest, sweeper and incident-api get exactly the calls the store makes on each table', () => {
    for (const name of WRITERS) {
      const statements = roleStatements(name);
      for (const table of STORE_TABLES) {
        const actions = [...actionsOn(statements, tableIds[table])].sort();
        assert.deepEqual(actions, [...new Set([...TABLE_READ_ACTIONS[table], ...TABLE_WRITE_ACTIONS[table]])].sort(), `${name} on ${table}`);
      }
    }
  });

  it('the events and idempotency tables are append-only for every role: no delete, update, batch or PartiQL write', () => {
    assert.deepEqual(nonAppendWrites(built, 'opx'), []);
    const restored = buildStack({
      restoredTables: JSON.stringify({
        tablePrefix: 'opx-r1',
        eventsStreamArn: 'arn:aws:dynamodb:eu-west-1:123456789012:table/opx-r1-events/stream/2026-01-01T00:00:00.000',
      }),
    });
    assert.deepEqual(nonAppendWrites(restored, 'opx-r1'), [], 'with restored tables too');
  });

  it('the append-only check finds an update on the events table (it is not vacuous)', () => {
    const json = structuredClone(built.json);
    const detectionRole = logicalId(built, built.stack.functions.detection.role);
    const [, policy] = resourcesOfType(json, 'AWS::IAM::Policy').find(([, p]) => references(p.Properties!.Roles, detectionRole))!;
    policy.Properties!.PolicyDocument.Statement.push({
      Effect: 'Allow',
      Action: 'dynamodb:UpdateItem',
      Resource: { 'Fn::GetAtt': [tableIds.events, 'Arn'] },
    });
    const found = nonAppendWrites({ ...built, json }, 'opx');
    assert.deepEqual(found.map(([, table, action]) => [table, action]), [['events', 'dynamodb:UpdateItem']]);
  });

  it('replay only reads the tables', () => {
    const statements = roleStatements('replay');
    for (const table of STORE_TABLES) {
      const actions = [...actionsOn(statements, tableIds[table])].sort();
      assert.deepEqual(actions, [...TABLE_READ_ACTIONS[table]].sort(), `replay on ${table}`);
      assert.ok(actions.every(isReadOnlyAction));
    }
  });

  it('fanout reads only the events stream, records only rejects, completes only pages and puts events only on the opx bus', () => {
    const statements = roleStatements('fanout');
    const projectionsArn = { 'Fn::GetAtt': [logicalId(built, built.stack.tables.projections), 'Arn'] };
    const isProjectionWrite = (s: Statement) => s.Sid === 'RecordRejects' || s.Sid === 'CompletePages';
    const dynamodbStatements = statements.filter((s) => asList(s.Action).some((a) => a.startsWith('dynamodb:')));
    const eventsTable = logicalId(built, built.stack.tables.events);
    const rejectWrites = dynamodbStatements.filter((s) => s.Sid === 'RecordRejects');
    assert.equal(rejectWrites.length, 1, 'fanout records refused stream images as rejects: it needs exactly one reject grant');
    assert.deepEqual(asList(rejectWrites[0].Action), ['dynamodb:PutItem']);
    assert.deepEqual(rejectWrites[0].Resource, projectionsArn);
    assert.deepEqual(rejectWrites[0].Condition, { 'ForAllValues:StringEquals': { 'dynamodb:LeadingKeys': ['~reject'] } });
    const pageCompletions = dynamodbStatements.filter((s) => s.Sid === 'CompletePages');
    assert.equal(pageCompletions.length, 1, 'fanout removes the page work item of a published paging event');
    assert.deepEqual(asList(pageCompletions[0].Action), ['dynamodb:DeleteItem']);
    assert.deepEqual(pageCompletions[0].Resource, projectionsArn);
    assert.deepEqual(pageCompletions[0].Condition, { 'ForAllValues:StringEquals': { 'dynamodb:LeadingKeys': ['~work'] } });
    for (const statement of dynamodbStatements.filter((s) => !isProjectionWrite(s))) {
      assert.deepEqual(statement.Resource, { 'Fn::GetAtt': [eventsTable, 'StreamArn'] }, 'stream actions on the stream ARN only');
      assert.deepEqual(asList(statement.Action).sort(), [
        'dynamodb:DescribeStream',
        'dynamodb:GetRecords',
        'dynamodb:GetShardIterator',
        'dynamodb:ListStreams',
      ]);
    }
    const putEvents = statements.filter((s) => asList(s.Action).includes('events:PutEvents'));
    assert.equal(putEvents.length, 1);
    assert.deepEqual(putEvents[0].Resource, { 'Fn::GetAtt': [logicalId(built, built.stack.bus), 'Arn'] });
    const services = new Set(statements.flatMap((s) => asList(s.Action)).map((a) => a.split(':')[0]));
    assert.deepEqual([...services].sort(), ['dynamodb', 'events', 'logs', 'sqs']);
  });

  it('only fanout and the sweeper (for the pages fanout could not send) may put events on the bus', () => {
    const publishers = ['fanout', 'sweeper'];
    for (const name of FUNCTION_NAMES) {
      const putEvents = roleStatements(name).filter((s) => asList(s.Action).includes('events:PutEvents'));
      if (!publishers.includes(name)) {
        assert.equal(putEvents.length, 0, `${name} may put events`);
        continue;
      }
      assert.equal(putEvents.length, 1, `${name} puts events`);
      assert.deepEqual(putEvents[0].Resource, { 'Fn::GetAtt': [logicalId(built, built.stack.bus), 'Arn'] });
    }
  });

  it('each function writes only its own log group', () => {
    for (const name of FUNCTION_NAMES) {
      const logStatements = roleStatements(name).filter((s) => asList(s.Action).some((a) => a.startsWith('logs:')));
      assert.equal(logStatements.length, 1, `${name} log statements`);
      const ownLogGroup = logicalId(built, built.stack.functions[name].logGroup);
      assert.deepEqual(logStatements[0].Resource, { 'Fn::GetAtt': [ownLogGroup, 'Arn'] });
      assert.deepEqual(asList(logStatements[0].Action).sort(), ['logs:CreateLogStream', 'logs:PutLogEvents']);
    }
  });
});

describe('IAM: API access levels', () => {
  const apiId = logicalId(built, built.stack.api.api);

  function invokableRoutes(level: (typeof ACCESS_LEVELS)[number]): string[] {
    const policyId = logicalId(built, built.stack.api.policies[level]);
    const policy = policies.find((p) => p.holder === policyId)!;
    return policy.statements.flatMap((statement) => {
      assert.deepEqual(asList(statement.Action), ['execute-api:Invoke']);
      return asList(statement.Resource as unknown[]).map((resource) => {
        const parts = (resource as { 'Fn::Join': [string, unknown[]] })['Fn::Join'][1];
        assert.ok(references(parts, apiId), 'resource is on the opx API');
        const tail = String(parts[parts.length - 1]);
        assert.ok(tail.startsWith(`/${API_STAGE_NAME}/`), `resource is on stage ${API_STAGE_NAME}: ${tail}`);
        return tail.slice(API_STAGE_NAME.length + 2);
      });
    });
  }

  const expected = (level: string) =>
    API_ROUTES.filter((route) => (route.levels as readonly string[]).includes(level))
      .map((route) => `${route.method}${routeArnPath(route)}`)
      .sort();

  const arnRoutes = (filter: (route: (typeof API_ROUTES)[number]) => boolean) =>
    API_ROUTES.filter(filter)
      .map((route) => `${route.method}${routeArnPath(route)}`)
      .sort();

  it('reader may invoke exactly the GET routes', () => {
    const routes = invokableRoutes('reader').sort();
    assert.ok(routes.length > 0);
    assert.deepEqual(routes, arnRoutes((route) => route.method === 'GET'));
    assert.deepEqual(routes, expected('reader'));
  });

  it('responder may invoke the reader routes and the incident commands', () => {
    const routes = invokableRoutes('responder').sort();
    const commands = arnRoutes((route) => route.command !== undefined);
    assert.ok(commands.length > 0);
    assert.ok(commands.every((route) => route.startsWith('POST/incidents/*/')), `${commands}`);
    assert.deepEqual(routes, [...expected('reader'), ...commands].sort());
    assert.ok(!routes.includes('POST/signals'));
  });

  it('approver may invoke what a responder may (closing is decided inside the API)', () => {
    assert.deepEqual(invokableRoutes('approver').sort(), invokableRoutes('responder').sort());
  });

  it('ingester may invoke POST /signals only', () => {
    assert.deepEqual(invokableRoutes('ingester'), ['POST/signals']);
    assert.deepEqual(invokableRoutes('ingester'), expected('ingester'));
  });

  it('each level has a role that carries its policy, assumable within the account only', () => {
    for (const level of ACCESS_LEVELS) {
      const role = built.json.Resources[logicalId(built, built.stack.api.roles[level])];
      assert.ok(references(role.Properties!.ManagedPolicyArns, logicalId(built, built.stack.api.policies[level])));
      const trust = role.Properties!.AssumeRolePolicyDocument.Statement;
      assert.equal(trust.length, 1);
      assert.ok(JSON.stringify(trust[0].Principal).includes(':iam::123456789012:root'), `${level} trust is this account`);
    }
  });

  it('extra role ARNs join the role map', () => {
    const extra = 'arn:aws:iam::123456789012:role/oncall-sre';
    const custom = buildStack({ extraRoleArns: JSON.stringify({ responder: [extra] }) });
    const fn = resourcesOfType(custom.json, 'AWS::Lambda::Function').find(
      ([, f]) => f.Properties?.FunctionName === 'opx-incident-api',
    )!;
    assert.ok(JSON.stringify(fn[1].Properties!.Environment.Variables.OPX_ROLE_MAP).includes(extra));
    assert.throws(() => buildStack({ extraRoleArns: '{"admin": []}' }), /unknown access level 'admin'/);
    assert.throws(() => buildStack({ extraRoleArns: '{"reader": ["oncall"]}' }), /not an IAM role ARN/);
  });
});
