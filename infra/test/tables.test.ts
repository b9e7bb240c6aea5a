import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Match } from 'aws-cdk-lib/assertions';
import { CfnResource, buildStack, resourcesOfType } from './support';

const built = buildStack();
const tables: Record<string, CfnResource> = Object.fromEntries(
  resourcesOfType(built.json, 'AWS::DynamoDB::Table').map(([, table]) => [table.Properties?.TableName, table]),
);

describe('DynamoDB tables', () => {
  it('are exactly the three tables of the DynamoDB store', () => {
    assert.deepEqual(Object.keys(tables).sort(), ['opx-events', 'opx-idempotency', 'opx-projections']);
  });

  it('have the key schemas the DynamoDB store uses, and no secondary indexes', () => {
    const expected: Record<string, { keys: [string, string, string][] }> = {
      'opx-events': { keys: [['stream_id', 'S', 'HASH'], ['sequence', 'N', 'RANGE']] },
      'opx-idempotency': { keys: [['key', 'S', 'HASH']] },
      'opx-projections': { keys: [['kind', 'S', 'HASH'], ['key', 'S', 'RANGE']] },
    };
    for (const [name, { keys }] of Object.entries(expected)) {
      const props = tables[name].Properties!;
      assert.deepEqual(
        props.KeySchema,
        keys.map(([attribute, , keyType]) => ({ AttributeName: attribute, KeyType: keyType })),
        `${name} key schema`,
      );
      assert.deepEqual(
        props.AttributeDefinitions,
        keys.map(([attribute, type]) => ({ AttributeName: attribute, AttributeType: type })),
        `${name} attribute definitions`,
      );
      assert.equal(props.GlobalSecondaryIndexes, undefined, `${name} has no GSI (a GSI cannot be read consistently)`);
      assert.equal(props.LocalSecondaryIndexes, undefined, `${name} has no LSI`);
    }
  });

  it('bill on demand, with point-in-time recovery, deletion protection and encryption', () => {
    for (const [name, table] of Object.entries(tables)) {
      const props = table.Properties!;
      assert.equal(props.BillingMode, 'PAY_PER_REQUEST', `${name} billing`);
      assert.deepEqual(
        props.PointInTimeRecoverySpecification,
        { PointInTimeRecoveryEnabled: true },
        `${name} point-in-time recovery`,
      );
      assert.equal(props.DeletionProtectionEnabled, true, `${name} deletion protection`);
      assert.equal(props.SSESpecification?.SSEEnabled, true, `${name} encryption with the AWS-managed key`);
      assert.equal(props.ProvisionedThroughput, undefined, `${name} has no provisioned capacity`);
    }
  });

  it('are retained when the stack is deleted or the resource replaced', () => {
    for (const [name, table] of Object.entries(tables)) {
      assert.equal(table.DeletionPolicy, 'Retain', `${name} DeletionPolicy`);
      assert.equal(table.UpdateReplacePolicy, 'Retain', `${name} UpdateReplacePolicy`);
    }
  });

  it('never expire items: no TTL on any table, above all idempotency', () => {
    for (const [name, table] of Object.entries(tables)) {
      assert.equal(table.Properties!.TimeToLiveSpecification, undefined, `${name} must not have a TTL`);
    }
    built.template.hasResourceProperties('AWS::DynamoDB::Table', {
      TableName: 'opx-idempotency',
      TimeToLiveSpecification: Match.absent(),
    });
  });

  it('stream NEW_IMAGE from the events table only', () => {
    assert.deepEqual(tables['opx-events'].Properties!.StreamSpecification, { StreamViewType: 'NEW_IMAGE' });
    assert.equal(tables['opx-idempotency'].Properties!.StreamSpecification, undefined);
    assert.equal(tables['opx-projections'].Properties!.StreamSpecification, undefined);
  });

  it('follow the prefix', () => {
    const names = resourcesOfType(buildStack({ prefix: 'opx-staging' }).json, 'AWS::DynamoDB::Table')
      .map(([, table]) => table.Properties?.TableName)
      .sort();
    assert.deepEqual(names, ['opx-staging-events', 'opx-staging-idempotency', 'opx-staging-projections']);
  });

  describe('after a point-in-time restore (restoredTables)', () => {
    const streamArn = 'arn:aws:dynamodb:eu-west-1:123456789012:table/opx-r1-events/stream/2026-01-02T03:04:05.678';
    const restored = buildStack({ restoredTables: JSON.stringify({ tablePrefix: 'opx-r1', eventsStreamArn: streamArn }) });

    it('creates no table (the restored ones are imported, the old ones are retained)', () => {
      assert.equal(resourcesOfType(restored.json, 'AWS::DynamoDB::Table').length, 0);
    });

    it('re-points the fan-out at the new stream', () => {
      const [[, mapping]] = resourcesOfType(restored.json, 'AWS::Lambda::EventSourceMapping');
      assert.equal(mapping.Properties!.EventSourceArn, streamArn);
      const streamGrants = JSON.stringify(restored.json).split(streamArn).length - 1;
      assert.ok(streamGrants >= 2, 'the fan-out role may read the new stream');
    });

    it('re-points every function and its grants at the restored tables', () => {
      for (const [, fn] of resourcesOfType(restored.json, 'AWS::Lambda::Function')) {
        assert.equal(fn.Properties!.Environment.Variables.OPX_TABLE_PREFIX, 'opx-r1');
      }
      const text = JSON.stringify(restored.json);
      for (const table of ['opx-r1-events', 'opx-r1-idempotency', 'opx-r1-projections']) {
        assert.ok(text.includes(`:table/${table}"`), `grants name ${table}`);
      }
      assert.ok(!text.includes(':table/opx-events"'), 'no grant on the old tables');
    });

    it('refuses a stream that is not the restored events table\'s', () => {
      assert.throws(
        () =>
          buildStack({
            restoredTables: JSON.stringify({
              tablePrefix: 'opx-r1',
              eventsStreamArn: 'arn:aws:dynamodb:eu-west-1:123456789012:table/opx-events/stream/2025-01-01T00:00:00.000',
            }),
          }),
        /must be the stream of opx-r1-events/,
      );
    });
  });
});
