import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { readFileSync } from 'node:fs';
import { API_ROUTES, API_STAGE_NAME, ROUTE_TABLE_PATH, apiRoleName, parseRouteTable } from '../lib/api';
import { ACCESS_LEVELS, API_REQUEST_SECONDS_BUDGET } from '../lib/config';
import { CfnTemplate, asList, buildStack, logicalId, resourcesOfType } from './support';

const built = buildStack();
const apiId = logicalId(built, built.stack.api.api);

/** `METHOD /path` of every method in the template, rebuilt from the resource tree. */
function declaredRoutes(json: CfnTemplate): Map<string, Record<string, any>> {
  const pathOf = (resourceRef: unknown): string => {
    const ref = resourceRef as { Ref?: string; 'Fn::GetAtt'?: [string, string] };
    if (ref['Fn::GetAtt']) {
      return ''; // the root resource
    }
    const resource = json.Resources[ref.Ref!].Properties!;
    return `${pathOf(resource.ParentId)}/${resource.PathPart}`;
  };
  const routes = new Map<string, Record<string, any>>();
  for (const [, method] of resourcesOfType(json, 'AWS::ApiGateway::Method')) {
    routes.set(`${method.Properties!.HttpMethod} ${pathOf(method.Properties!.ResourceId)}`, method.Properties!);
  }
  return routes;
}

describe('incident API', () => {
  const routes = declaredRoutes(built.json);

  it('declares exactly the routes of the generated route table', () => {
    const generated = JSON.parse(readFileSync(ROUTE_TABLE_PATH, 'utf8')).routes as { method: string; path: string }[];
    assert.ok(generated.length > 0);
    assert.deepEqual(
      [...routes.keys()].sort(),
      generated.map((route) => `${route.method} ${route.path}`).sort(),
    );
    assert.deepEqual(
      [...routes.keys()].sort(),
      API_ROUTES.map((route) => `${route.method} ${route.path}`).sort(),
    );
    // Human actions are the POSTs on one incident; every other route is a read or the signal intake.
    for (const route of API_ROUTES) {
      const onIncident = route.path.startsWith('/incidents/{id}/');
      assert.equal(route.command !== undefined, route.method === 'POST' && onIncident, `${route.method} ${route.path}`);
    }
  });

  it('uses AWS_IAM on every method', () => {
    const methods = resourcesOfType(built.json, 'AWS::ApiGateway::Method');
    assert.equal(methods.length, API_ROUTES.length);
    for (const [id, method] of methods) {
      assert.equal(method.Properties!.AuthorizationType, 'AWS_IAM', `${id} authorization`);
    }
  });

  it('refuses a route table it cannot declare', () => {
    const row = { method: 'GET', path: '/incidents', operation_id: 'listIncidents', levels: ['reader'], command: null, json_object_body: false };
    assert.equal(parseRouteTable(JSON.stringify({ routes: [row] })).length, 1);
    for (const bad of [
      { ...row, method: 'DELETE' },
      { ...row, path: 'incidents' },
      { ...row, levels: ['operator'] },
      { ...row, levels: [] },
      { ...row, json_object_body: 'yes' },
      { ...row, command: 3 },
    ]) {
      assert.throws(() => parseRouteTable(JSON.stringify({ routes: [bad] })), /route 0/, JSON.stringify(bad));
    }
    assert.throws(() => parseRouteTable('{"routes":[]}'), /no routes/);
  });

  it('proxies every method to incident-api', () => {
    const handler = logicalId(built, built.stack.functions['incident-api'].function);
    for (const [route, method] of routes) {
      assert.equal(method.Integration.Type, 'AWS_PROXY', `${route} is a Lambda proxy`);
      assert.ok(JSON.stringify(method.Integration.Uri).includes(`"${handler}"`), `${route} goes to incident-api`);
    }
  });

  it('checks that incident command bodies are JSON objects, and leaves POST /signals to the function', () => {
    for (const [route, method] of routes) {
      assert.ok(method.RequestValidatorId, `${route} has a validator`);
      const isCommand = API_ROUTES.some((r) => `${r.method} ${r.path}` === route && r.command !== undefined);
      assert.equal(method.RequestModels !== undefined, isCommand, `${route} body model`);
    }
    built.template.hasResourceProperties('AWS::ApiGateway::Model', {
      ContentType: 'application/json',
      Schema: { $schema: 'http://json-schema.org/draft-04/schema#', type: 'object' },
    });
  });

  it('logs access as JSON to its own log group, with the caller ARN', () => {
    const stage = resourcesOfType(built.json, 'AWS::ApiGateway::Stage')[0][1].Properties!;
    assert.equal(stage.StageName, API_STAGE_NAME);
    const accessLogs = logicalId(built, built.stack.api.accessLogs);
    assert.ok(JSON.stringify(stage.AccessLogSetting.DestinationArn).includes(accessLogs));
    const format = JSON.parse(stage.AccessLogSetting.Format);
    assert.equal(format.userArn, '$context.identity.userArn');
    assert.equal(format.status, '$context.status');
    const logGroup = built.json.Resources[accessLogs];
    assert.equal(logGroup.Properties!.RetentionInDays, 90);
  });

  it('throttles the stage to what the incident-api reserved concurrency can run, and logs errors without bodies', () => {
    const throttleOf = (json: CfnTemplate) => {
      const settings = resourcesOfType(json, 'AWS::ApiGateway::Stage')[0][1].Properties!.MethodSettings[0];
      return { rate: settings.ThrottlingRateLimit, burst: settings.ThrottlingBurstLimit, settings };
    };
    const reservedOf = (json: CfnTemplate) =>
      resourcesOfType(json, 'AWS::Lambda::Function').find(([, f]) => f.Properties!.FunctionName === 'opx-incident-api')![1].Properties!
        .ReservedConcurrentExecutions;
    for (const b of [built, buildStack({ reservedConcurrency: '{"incident-api":25}' })]) {
      const { rate, burst } = throttleOf(b.json);
      const reserved = reservedOf(b.json);
      // A burst, and a second of steady-state requests each within the budget, fit the reservation.
      assert.equal(burst, reserved);
      assert.ok(rate * API_REQUEST_SECONDS_BUDGET <= reserved, `rate ${rate}/s with ${API_REQUEST_SECONDS_BUDGET} s requests fits ${reserved}`);
      assert.equal(rate, reserved / API_REQUEST_SECONDS_BUDGET);
    }
    assert.equal(throttleOf(buildStack({ reservedConcurrency: '{"incident-api":25}' }).json).burst, 25);
    const { settings } = throttleOf(built.json);
    assert.equal(settings.LoggingLevel, 'ERROR');
    assert.equal(settings.DataTraceEnabled, false);
    assert.throws(() => buildStack({ apiThrottleRateLimit: 5 }), /reservedConcurrency/);
  });

  it('creates the execution log group before the stage, with a retention', () => {
    const [stageId, stage] = resourcesOfType(built.json, 'AWS::ApiGateway::Stage')[0];
    const executionLogs = logicalId(built, built.stack.api.executionLogs);
    const group = built.json.Resources[executionLogs].Properties!;
    assert.deepEqual(group.LogGroupName, { 'Fn::Join': ['', ['API-Gateway-Execution-Logs_', { Ref: apiId }, `/${API_STAGE_NAME}`]] });
    assert.equal(group.RetentionInDays, 90);
    assert.ok(asList((stage as { DependsOn?: string[] }).DependsOn).includes(executionLogs), `${stageId} waits for the group`);
  });

  it('answers gateway errors as problem+json', () => {
    for (const type of ['DEFAULT_4XX', 'DEFAULT_5XX']) {
      built.template.hasResourceProperties('AWS::ApiGateway::GatewayResponse', {
        ResponseType: type,
        RestApiId: { Ref: apiId },
        ResponseParameters: { 'gatewayresponse.header.Content-Type': "'application/problem+json'" },
      });
    }
  });

  it('associates a WAF web ACL only when one is given', () => {
    assert.equal(resourcesOfType(built.json, 'AWS::WAFv2::WebACLAssociation').length, 0);
    const webAclArn = 'arn:aws:wafv2:eu-west-1:123456789012:regional/webacl/opx/abc';
    const withWaf = buildStack({ webAclArn });
    withWaf.template.hasResourceProperties('AWS::WAFv2::WebACLAssociation', { WebACLArn: webAclArn });
  });

  it('creates the account-level logging role unless told the account has one', () => {
    assert.equal(resourcesOfType(built.json, 'AWS::ApiGateway::Account').length, 1);
    const without = buildStack({ apiGatewayAccountRole: 'false' });
    assert.equal(resourcesOfType(without.json, 'AWS::ApiGateway::Account').length, 0);
  });
});

/** One statement of the REST API's resource policy. */
interface ApiPolicyStatement {
  Effect: 'Allow' | 'Deny';
  Principal: unknown;
  Action: string;
  Resource: string | string[];
  Condition: Record<string, Record<string, string[]>>;
}

function resourcePolicy(json: CfnTemplate): ApiPolicyStatement[] {
  const apis = resourcesOfType(json, 'AWS::ApiGateway::RestApi');
  assert.equal(apis.length, 1);
  return apis[0][1].Properties!.Policy.Statement;
}

/** Whether `execute-api:/<stage>/<METHOD>/<path>` matches a policy resource (`*` matches any characters). */
function matches(pattern: string, resource: string): boolean {
  const regex = new RegExp(`^${pattern.split('*').map((part) => part.replace(/[.+?^${}()|[\]\\/]/g, '\\$&')).join('.*')}$`);
  return regex.test(resource);
}

/**
 * What the resource policy alone decides for a caller (by `aws:PrincipalArn`) on a request:
 * an explicit deny wins, then an allow; otherwise it is silent (IAM policies decide).
 */
function decide(statements: ApiPolicyStatement[], principalArn: string, request: string): 'deny' | 'allow' | 'silent' {
  const applies = (statement: ApiPolicyStatement) => {
    if (statement.Action !== 'execute-api:Invoke' || JSON.stringify(statement.Principal) !== '{"AWS":"*"}') {
      throw new Error(`unexpected statement ${JSON.stringify(statement)}`);
    }
    if (!asList(statement.Resource).some((pattern) => matches(pattern, request))) {
      return false;
    }
    return Object.entries(statement.Condition).every(([operator, block]) => {
      const values = asList(block['aws:PrincipalArn']);
      assert.equal(Object.keys(block).length, 1, 'conditions on aws:PrincipalArn only');
      if (operator === 'ArnEquals') return values.includes(principalArn);
      if (operator === 'ArnNotEquals') return !values.includes(principalArn);
      throw new Error(`unexpected operator ${operator}`);
    });
  };
  if (statements.some((s) => s.Effect === 'Deny' && applies(s))) return 'deny';
  if (statements.some((s) => s.Effect === 'Allow' && applies(s))) return 'allow';
  return 'silent';
}

const requestOf = (route: (typeof API_ROUTES)[number]) =>
  `execute-api:/${API_STAGE_NAME}/${route.method}${route.path.replace('{id}', 'inc-1')}`;

describe('incident API resource policy', () => {
  const extra = 'arn:aws:iam::123456789012:role/oncall-sre';
  const withExtra = buildStack({ extraRoleArns: JSON.stringify({ responder: [extra] }) });
  const account = built.stack.account;
  const ownRole = (level: string) => `arn:aws:iam::${account}:role/${apiRoleName('opx', level as never)}`;

  it('names the roles the stack creates', () => {
    for (const level of ACCESS_LEVELS) {
      const role = built.json.Resources[logicalId(built, built.stack.api.roles[level])];
      assert.equal(role.Properties!.RoleName, apiRoleName('opx', level));
    }
  });

  it('lets each role-map principal invoke exactly its level\'s routes', () => {
    const statements = resourcePolicy(withExtra.json);
    for (const level of ACCESS_LEVELS) {
      const principals = level === 'responder' ? [ownRole(level), extra] : [ownRole(level)];
      for (const principal of principals) {
        for (const route of API_ROUTES) {
          const expected = route.levels.includes(level) ? 'allow' : 'silent';
          assert.equal(decide(statements, principal, requestOf(route)), expected, `${principal} ${route.method} ${route.path}`);
        }
      }
    }
  });

  it('denies every route to a principal outside the role map, an administrator of the account included', () => {
    for (const outsider of [`arn:aws:iam::${account}:role/Admin`, `arn:aws:iam::${account}:user/alice`, extra]) {
      for (const route of API_ROUTES) {
        assert.equal(decide(resourcePolicy(built.json), outsider, requestOf(route)), 'deny', `${outsider} ${route.method} ${route.path}`);
      }
    }
    assert.equal(decide(resourcePolicy(built.json), ownRole('reader'), `execute-api:/${API_STAGE_NAME}/DELETE/incidents`), 'silent');
    assert.equal(decide(resourcePolicy(built.json), extra, `execute-api:/${API_STAGE_NAME}/DELETE/incidents`), 'deny');
  });

  it('redeploys the stage when the resource policy changes', () => {
    const deploymentId = (json: CfnTemplate) => resourcesOfType(json, 'AWS::ApiGateway::Deployment').map(([id]) => id);
    assert.notDeepEqual(deploymentId(built.json), deploymentId(withExtra.json));
  });
});
