import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Statement, asList, buildStack, logicalId, resourcesOfType } from './support';

const built = buildStack();

/**
 * Global condition keys AWS does not support in a KMS key policy for a service publishing to an
 * encrypted SNS topic (EventBridge documents it): a statement carrying one never matches, and
 * every publish fails at KMS.
 */
const UNSUPPORTED_IN_KEY_POLICY = ['aws:sourceaccount', 'aws:sourcearn', 'aws:sourceorgid'];

/** The unsupported source keys a statement's conditions use, whatever the operator. */
function unsupportedSourceKeys(statement: Statement): string[] {
  const keys = Object.values((statement.Condition ?? {}) as Record<string, Record<string, unknown>>).flatMap((block) =>
    Object.keys(block),
  );
  return keys.filter((key) => UNSUPPORTED_IN_KEY_POLICY.includes(key.toLowerCase()));
}

function keyStatements(json = built.json): Statement[] {
  return resourcesOfType(json, 'AWS::KMS::Key').flatMap(([, key]) => key.Properties!.KeyPolicy.Statement as Statement[]);
}

function servicesOf(statement: Statement): string[] {
  const principal = statement.Principal as { Service?: string | string[] } | undefined;
  return asList(principal?.Service);
}

/** The ARN SNS gives the topic named `name` in the test environment. */
function topicArnFor(name: string): string {
  return `arn:aws:sns:${built.stack.region}:${built.stack.account}:${name}`;
}

describe('messaging key: services can publish to the encrypted topics', () => {
  it('no key policy statement for a service principal carries aws:SourceAccount, aws:SourceArn or aws:SourceOrgID', () => {
    const servicesStatements = keyStatements().filter((statement) => servicesOf(statement).length > 0);
    assert.ok(servicesStatements.length > 0, 'the key policy has service statements to check');
    for (const statement of servicesStatements) {
      assert.deepEqual(unsupportedSourceKeys(statement), [], `${statement.Sid} would make KMS refuse ${servicesOf(statement)}`);
    }
  });

  it('the check finds the condition that broke paging (it is not vacuous)', () => {
    const broken: Statement = {
      Effect: 'Allow',
      Principal: { Service: 'events.amazonaws.com' },
      Action: ['kms:GenerateDataKey*'],
      Condition: { StringEquals: { 'aws:SourceAccount': '123456789012' }, ArnLike: { 'AWS:SourceArn': 'arn' } },
    };
    assert.deepEqual(unsupportedSourceKeys(broken), ['aws:SourceAccount', 'AWS:SourceArn']);
  });

  it('EventBridge may use the key for the paging topic only, CloudWatch for the alarms and ops topics only', () => {
    const topicsOf = (service: string) =>
      keyStatements()
        .filter((statement) => servicesOf(statement).includes(service))
        .map((statement) => {
          assert.deepEqual(asList(statement.Action).sort(), ['kms:Decrypt', 'kms:GenerateDataKey*']);
          return (statement.Condition as any).StringEquals['kms:EncryptionContext:aws:sns:topicArn'];
        })
        .sort();
    assert.deepEqual(topicsOf('events.amazonaws.com'), [topicArnFor('opx-paging')]);
    assert.deepEqual(topicsOf('cloudwatch.amazonaws.com'), [topicArnFor('opx-alarms'), topicArnFor('opx-ops')]);
  });

  it('the context names match the topics the stack creates', () => {
    for (const name of ['opx-paging', 'opx-alarms', 'opx-ops']) {
      built.template.hasResourceProperties('AWS::SNS::Topic', { TopicName: name });
    }
  });

  it('the paging topic policy lets EventBridge publish only from the paging rule (aws:SourceArn)', () => {
    const topicId = logicalId(built, built.stack.paging.topic);
    const ruleId = logicalId(built, built.stack.paging.rule);
    const policies = resourcesOfType(built.json, 'AWS::SNS::TopicPolicy').filter(([, policy]) =>
      JSON.stringify(policy.Properties!.Topics).includes(`"${topicId}"`),
    );
    const fromEvents = policies
      .flatMap(([, policy]) => policy.Properties!.PolicyDocument.Statement as Statement[])
      .filter((statement) => statement.Effect === 'Allow' && servicesOf(statement).includes('events.amazonaws.com'));
    assert.equal(fromEvents.length, 1);
    assert.deepEqual(fromEvents[0].Condition, { ArnEquals: { 'aws:SourceArn': { 'Fn::GetAtt': [ruleId, 'Arn'] } } });
  });
});
