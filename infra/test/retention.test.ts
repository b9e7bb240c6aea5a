import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { buildStack, logicalId, resourcesOfType } from './support';

const built = buildStack();
const resources = Object.entries(built.json.Resources);
/** CloudFormation's name for RemovalPolicy.RETAIN_ON_UPDATE_OR_DELETE: kept on delete and replace, deleted when its own create rolls back. */
const RETAIN_EXCEPT_ON_CREATE = 'RetainExceptOnCreate';

describe('a rolled-back first deploy can be retried; cdk destroy keeps the record', () => {
  it('nothing but the deletion-protected tables survives a rolled-back create', () => {
    const keptOnRollback = resources.filter(([, resource]) => resource.DeletionPolicy === 'Retain');
    assert.deepEqual(
      keptOnRollback.map(([, resource]) => resource.Type),
      ['AWS::DynamoDB::Table', 'AWS::DynamoDB::Table', 'AWS::DynamoDB::Table'],
      'any other kept resource with a fixed name makes the retry fail with "already exists"',
    );
    for (const [id, table] of keptOnRollback) {
      // RetainExceptOnCreate would have CloudFormation delete a protected table on rollback,
      // which fails and leaves the stack in ROLLBACK_FAILED.
      assert.equal(table.Properties!.DeletionProtectionEnabled, true, `${id} is deletion-protected`);
    }
  });

  it('log groups, the messaging key and the API Gateway account role are kept on delete, not on a rolled-back create', () => {
    const logGroups = resourcesOfType(built.json, 'AWS::Logs::LogGroup');
    assert.equal(logGroups.length, 11, 'nine function log groups and the API access and execution log groups');
    const kept = [
      ...logGroups,
      ...resourcesOfType(built.json, 'AWS::KMS::Key'),
      ...resourcesOfType(built.json, 'AWS::ApiGateway::Account'),
      ...resourcesOfType(built.json, 'AWS::IAM::Role').filter(([, role]) =>
        JSON.stringify(role.Properties!.AssumeRolePolicyDocument).includes('apigateway.amazonaws.com'),
      ),
    ];
    assert.equal(kept.length, 14);
    for (const [id, resource] of kept) {
      assert.equal(resource.DeletionPolicy, RETAIN_EXCEPT_ON_CREATE, `${id} DeletionPolicy`);
      assert.equal(resource.UpdateReplacePolicy, 'Retain', `${id} UpdateReplacePolicy`);
    }
  });

  it('every dead-letter queue and the alarm archive survive cdk destroy', () => {
    const queues = resourcesOfType(built.json, 'AWS::SQS::Queue');
    assert.equal(queues.length, 8);
    const archive = built.json.Resources[logicalId(built, built.stack.entryPoints.alarmArchive)];
    assert.equal(archive.Type, 'AWS::Events::Archive');
    for (const [id, resource] of [...queues, ['alarm archive', archive] as const]) {
      assert.equal(resource.DeletionPolicy, RETAIN_EXCEPT_ON_CREATE, `${id} DeletionPolicy`);
      assert.equal(resource.UpdateReplacePolicy, 'Retain', `${id} UpdateReplacePolicy`);
    }
  });
});
