import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Match } from 'aws-cdk-lib/assertions';
import { PAGING_DETAIL_TYPES } from '../lib/paging';
import { STAGE_ROUTES } from '../lib/pipeline';
import { parseStageTable, STAGES } from '../lib/stages';
import { CfnResource, buildStack, logicalId, references, resourcesOfType } from './support';

const built = buildStack();
const rules = resourcesOfType(built.json, 'AWS::Events::Rule');
const busId = logicalId(built, built.stack.bus);

function functionId(name: string): string {
  return logicalId(built, built.stack.functions[name as keyof typeof built.stack.functions].function);
}

function ruleFor(detailType: string): CfnResource {
  const found = rules.filter(([, rule]) => rule.Properties!.EventPattern?.['detail-type']?.includes(detailType));
  assert.equal(found.length, 1, `one rule for ${detailType}`);
  return found[0][1];
}

describe('event routing on the opx bus', () => {
  it('the bus exists and archives every opx notification', () => {
    built.template.hasResourceProperties('AWS::Events::EventBus', { Name: 'opx-bus' });
    built.template.hasResourceProperties('AWS::Events::Archive', {
      SourceArn: { 'Fn::GetAtt': [busId, 'Arn'] },
      EventPattern: { source: ['opx'] },
      RetentionDays: 30,
    });
  });

  it('reads the stage table the Rust code generates and refuses one it cannot declare', () => {
    assert.deepEqual(
      STAGES.map((spec) => [spec.stage, spec.function, spec.runsFromBus]),
      [
        ['detect', 'detection', true],
        ['correlate', 'evidence', true],
        ['assess', 'confidence', true],
        ['promote', 'promotion', true],
        ['page', 'fanout', false],
      ],
    );
    const row = { stage: 'detect', function: 'detection', input_event_types: ['SignalAccepted'], output_event_types: [], runs_from_bus: true };
    assert.equal(parseStageTable(JSON.stringify({ stages: [row] })).length, 1);
    for (const bad of [
      { stages: [] },
      { stages: [{ ...row, function: 'detector' }] },
      { stages: [{ ...row, input_event_types: 'SignalAccepted' }] },
      { stages: [{ ...row, runs_from_bus: 'yes' }] },
    ]) {
      assert.throws(() => parseStageTable(JSON.stringify(bad)), /stages\.json/);
    }
  });

  it('routes each consumed event type to its stage and nowhere else', () => {
    assert.deepEqual(
      STAGE_ROUTES.map((route) => [route.detailType, route.stage]),
      [
        ['SignalAccepted', 'detection'],
        ['SignalEvaluated', 'evidence'],
        ['DetectionCorrelated', 'confidence'],
        ['ConfidenceAssessed', 'promotion'],
      ],
    );
    for (const route of STAGE_ROUTES) {
      const rule = ruleFor(route.detailType).Properties!;
      assert.deepEqual(rule.EventBusName, { Ref: busId }, `${route.detailType} rule is on the opx bus`);
      assert.deepEqual(rule.EventPattern, { source: ['opx'], 'detail-type': [route.detailType] });
      assert.equal(rule.Targets.length, 1);
      assert.deepEqual(rule.Targets[0].Arn, { 'Fn::GetAtt': [functionId(route.stage), 'Arn'] });
    }
  });

  it('gives every target of every rule a retry policy and a dead-letter queue', () => {
    assert.equal(rules.length, 7, 'four stage rules, the sweep schedule, the alarm rule, paging');
    for (const [id, rule] of rules) {
      for (const target of rule.Properties!.Targets) {
        const dlq = target.DeadLetterConfig?.Arn;
        assert.ok(dlq, `${id} target ${target.Id} has a DLQ`);
        assert.equal(built.json.Resources[dlq['Fn::GetAtt'][0]].Type, 'AWS::SQS::Queue');
        assert.ok(target.RetryPolicy?.MaximumRetryAttempts !== undefined, `${id} bounds retries`);
        assert.ok(target.RetryPolicy?.MaximumEventAgeInSeconds !== undefined, `${id} bounds event age`);
      }
    }
  });

  it('runs the sweeper every 5 minutes', () => {
    const sweep = rules.find(([, rule]) => rule.Properties!.ScheduleExpression !== undefined)![1].Properties!;
    assert.equal(sweep.ScheduleExpression, 'rate(5 minutes)');
    assert.deepEqual(sweep.Targets[0].Arn, { 'Fn::GetAtt': [functionId('sweeper'), 'Arn'] });
    const sweeper = built.json.Resources[functionId('sweeper')].Properties!;
    assert.ok(sweeper.Timeout < 300, 'a sweep ends before the next one starts');
  });
});

describe('signal entry points', () => {
  it('a default-bus rule sends every CloudWatch alarm state change, except opx\'s own, to signal-ingest', () => {
    const alarmRule = ruleFor('CloudWatch Alarm State Change').Properties!;
    assert.equal(alarmRule.EventBusName, undefined, 'the default bus');
    assert.deepEqual(alarmRule.EventPattern, {
      source: ['aws.cloudwatch'],
      'detail-type': ['CloudWatch Alarm State Change'],
      detail: { alarmName: [{ 'anything-but': { prefix: 'opx-self-' } }] },
    });
    assert.deepEqual(alarmRule.Targets[0].Arn, { 'Fn::GetAtt': [functionId('signal-ingest'), 'Arn'] });
    assert.equal(alarmRule.Targets[0].RetryPolicy.MaximumEventAgeInSeconds, 86400, 'a signal is retried for a day');
  });

  it('the alarm state changes are archived with the same pattern, for replay into ingest', () => {
    const alarmRule = ruleFor('CloudWatch Alarm State Change').Properties!;
    built.template.hasResourceProperties('AWS::Events::Archive', {
      ArchiveName: 'opx-alarm-archive',
      SourceArn: 'arn:aws:events:eu-west-1:123456789012:event-bus/default',
      EventPattern: alarmRule.EventPattern,
      RetentionDays: 30,
    });
  });

  it('every opx alarm is named so that the alarm rule drops it', () => {
    for (const [id, alarm] of resourcesOfType(built.json, 'AWS::CloudWatch::Alarm')) {
      assert.ok(String(alarm.Properties!.AlarmName).startsWith('opx-self-'), `${id} name`);
    }
  });

  it('the alarms topic is encrypted, TLS-only, and subscribed by signal-ingest with a DLQ', () => {
    const topics = resourcesOfType(built.json, 'AWS::SNS::Topic');
    const [alarmsId] = topics.find(([, topic]) => topic.Properties!.TopicName === 'opx-alarms')!;
    built.template.hasResourceProperties('AWS::SNS::Subscription', {
      Protocol: 'lambda',
      TopicArn: { Ref: alarmsId },
      Endpoint: { 'Fn::GetAtt': [functionId('signal-ingest'), 'Arn'] },
      RedrivePolicy: { deadLetterTargetArn: Match.anyValue() },
    });
  });

  it('existing alarm topics listed in existingAlarmTopicArns are subscribed too', () => {
    const existing = 'arn:aws:sns:eu-west-1:123456789012:team-alarms';
    const custom = buildStack({ existingAlarmTopicArns: JSON.stringify([existing]) });
    custom.template.hasResourceProperties('AWS::SNS::Subscription', {
      Protocol: 'lambda',
      TopicArn: existing,
      RedrivePolicy: { deadLetterTargetArn: Match.anyValue() },
    });
    custom.template.hasResourceProperties('AWS::Lambda::Permission', { Principal: 'sns.amazonaws.com', SourceArn: existing });
    assert.throws(() => buildStack({ existingAlarmTopicArns: '["team-alarms"]' }), /not an SNS topic ARN/);
  });

  it('every SNS subscription has a dead-letter queue', () => {
    for (const [id, subscription] of resourcesOfType(built.json, 'AWS::SNS::Subscription')) {
      assert.ok(subscription.Properties!.RedrivePolicy?.deadLetterTargetArn, `${id} redrive policy`);
    }
  });

  it('CloudWatch alarm actions of this account may invoke signal-ingest directly', () => {
    built.template.hasResourceProperties('AWS::Lambda::Permission', {
      Principal: 'lambda.alarms.cloudwatch.amazonaws.com',
      FunctionName: { 'Fn::GetAtt': [functionId('signal-ingest'), 'Arn'] },
      SourceAccount: '123456789012',
    });
  });
});

describe('paging', () => {
  const topics = resourcesOfType(built.json, 'AWS::SNS::Topic');
  const paging = topics.find(([, topic]) => topic.Properties!.TopicName === 'opx-paging');

  it('is an encrypted topic', () => {
    assert.ok(paging, 'opx-paging exists');
    assert.ok(paging[1].Properties!.KmsMasterKeyId, 'paging topic is encrypted');
  });

  it('receives IncidentOpened and SeverityChanged from the opx bus as a short message, with a DLQ', () => {
    assert.deepEqual([...PAGING_DETAIL_TYPES], ['IncidentOpened', 'SeverityChanged']);
    const rule = ruleFor('IncidentOpened').Properties!;
    assert.deepEqual(rule.EventBusName, { Ref: busId });
    assert.deepEqual(rule.EventPattern, { source: ['opx'], 'detail-type': ['IncidentOpened', 'SeverityChanged'] });
    const target = rule.Targets[0];
    assert.deepEqual(target.Arn, { Ref: paging![0] });
    assert.ok(target.InputTransformer.InputTemplate.includes('opx show'), 'message says how to see details');
    // The message id lets the pager deduplicate a page the sweeper sent again.
    assert.deepEqual(Object.values(target.InputTransformer.InputPathsMap).sort(), [
      '$.detail-type',
      '$.detail.message_id',
      '$.detail.sequence',
      '$.detail.stream_id',
      '$.time',
    ]);
    assert.ok(target.DeadLetterConfig.Arn);
  });

  it('only this rule may publish to it', () => {
    const policy = resourcesOfType(built.json, 'AWS::SNS::TopicPolicy').find(([, p]) => references(p.Properties!.Topics, paging![0]))!;
    const publish = policy[1].Properties!.PolicyDocument.Statement.filter(
      (s: { Effect: string; Action: string }) => s.Effect === 'Allow' && s.Action === 'sns:Publish',
    );
    assert.equal(publish.length, 1);
    const ruleId = rules.find(([, r]) => r.Properties!.EventPattern?.['detail-type']?.includes('IncidentOpened'))![0];
    assert.deepEqual(publish[0].Condition, { ArnEquals: { 'aws:SourceArn': { 'Fn::GetAtt': [ruleId, 'Arn'] } } });
  });
});

describe('queues and topics', () => {
  it('every queue is encrypted, TLS-only and keeps messages 14 days', () => {
    const queues = resourcesOfType(built.json, 'AWS::SQS::Queue');
    assert.equal(queues.length, 8);
    for (const [id, queue] of queues) {
      assert.equal(queue.Properties!.SqsManagedSseEnabled, true, `${id} encryption`);
      assert.equal(queue.Properties!.MessageRetentionPeriod, 14 * 24 * 3600, `${id} retention`);
      const policy = resourcesOfType(built.json, 'AWS::SQS::QueuePolicy').find(([, p]) => references(p.Properties!.Queues, id));
      assert.ok(policy, `${id} has a queue policy`);
      assert.ok(
        policy[1].Properties!.PolicyDocument.Statement.some(
          (s: { Effect: string; Condition?: unknown }) =>
            s.Effect === 'Deny' && JSON.stringify(s.Condition) === '{"Bool":{"aws:SecureTransport":"false"}}',
        ),
        `${id} denies plain HTTP`,
      );
    }
  });

  it('every topic is encrypted with the messaging key and denies plain HTTP', () => {
    for (const [id, topic] of resourcesOfType(built.json, 'AWS::SNS::Topic')) {
      assert.ok(topic.Properties!.KmsMasterKeyId, `${id} encryption`);
      const policy = resourcesOfType(built.json, 'AWS::SNS::TopicPolicy').find(([, p]) => references(p.Properties!.Topics, id));
      assert.ok(policy, `${id} has a topic policy`);
      assert.ok(
        policy[1].Properties!.PolicyDocument.Statement.some((s: { Effect: string }) => s.Effect === 'Deny'),
        `${id} denies plain HTTP`,
      );
    }
    built.template.hasResourceProperties('AWS::KMS::Key', { EnableKeyRotation: true });
  });
});
