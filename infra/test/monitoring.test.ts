import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FUNCTION_NAMES } from '../lib/config';
import { CfnResource, buildStack, logicalId, resourcesOfType } from './support';

const built = buildStack();
const alarms = resourcesOfType(built.json, 'AWS::CloudWatch::Alarm').map(([, alarm]) => alarm.Properties!);
const byName = new Map(alarms.map((alarm) => [alarm.AlarmName as string, alarm]));

function alarm(name: string): Record<string, any> {
  const found = byName.get(name);
  assert.ok(found, `alarm ${name} exists`);
  return found;
}

describe('alarms on opx itself', () => {
  it('every function has an errors alarm and a throttles alarm on its own metrics', () => {
    for (const name of FUNCTION_NAMES) {
      const fnId = logicalId(built, built.stack.functions[name].function);
      for (const [suffix, metric] of [
        ['errors', 'Errors'],
        ['throttles', 'Throttles'],
      ]) {
        const found = alarm(`opx-self-${name}-${suffix}`);
        assert.equal(found.Namespace, 'AWS/Lambda');
        assert.equal(found.MetricName, metric);
        assert.deepEqual(found.Dimensions, [{ Name: 'FunctionName', Value: { Ref: fnId } }]);
        assert.equal(found.Threshold, 1);
      }
    }
  });

  it('every queue (all of them are dead-letter queues) has a depth alarm', () => {
    const queues = resourcesOfType(built.json, 'AWS::SQS::Queue');
    for (const [queueId, queue] of queues) {
      const depth = alarms.filter(
        (a) =>
          a.MetricName === 'ApproximateNumberOfMessagesVisible' &&
          JSON.stringify(a.Dimensions).includes(`"${queueId}"`),
      );
      assert.equal(depth.length, 1, `${queue.Properties!.QueueName} has one depth alarm`);
      assert.equal(depth[0].Threshold, 1);
      assert.equal(depth[0].ComparisonOperator, 'GreaterThanOrEqualToThreshold');
    }
  });

  it('the fan-out iterator age is watched', () => {
    const found = alarm('opx-self-fanout-iterator-age');
    assert.equal(found.MetricName, 'IteratorAge');
    assert.deepEqual(found.Dimensions, [{ Name: 'FunctionName', Value: { Ref: logicalId(built, built.stack.functions.fanout.function) } }]);
  });

  it('no signals for the configured period is an alarm, and so is no data at all', () => {
    const found = alarm('opx-self-no-signals');
    assert.equal(found.Namespace, 'opx');
    assert.equal(found.MetricName, 'SignalsIngested');
    assert.equal(found.Dimensions, undefined, 'EMF metrics are emitted without dimensions');
    assert.equal(found.Period, 3600);
    assert.equal(found.ComparisonOperator, 'LessThanThreshold');
    assert.equal(found.TreatMissingData, 'breaching');
    const custom = buildStack({ noSignalsPeriodMinutes: '240' });
    const customAlarm = resourcesOfType(custom.json, 'AWS::CloudWatch::Alarm')
      .map(([, a]) => a.Properties!)
      .find((a) => a.AlarmName === 'opx-self-no-signals')!;
    assert.equal(customAlarm.Period, 240 * 60);
    assert.throws(() => buildStack({ noSignalsPeriodMinutes: '2' }), /noSignalsPeriodMinutes 2 is out of range/);
  });

  it('p99 end-to-end lag above the threshold is an alarm', () => {
    const found = alarm('opx-self-end-to-end-lag');
    assert.equal(found.Namespace, 'opx');
    assert.equal(found.MetricName, 'EndToEndLagMs');
    assert.equal(found.ExtendedStatistic, 'p99');
    assert.equal(found.Threshold, 300000);
  });

  it('a high share of rejected signals is an alarm', () => {
    const found = alarm('opx-self-rejected-signal-rate');
    const expression = found.Metrics.find((m: { Expression?: string }) => m.Expression);
    assert.ok(expression.Expression.includes('rejected'));
    const names = found.Metrics.filter((m: { MetricStat?: unknown }) => m.MetricStat).map(
      (m: { MetricStat: { Metric: { Namespace: string; MetricName: string } } }) =>
        `${m.MetricStat.Metric.Namespace}/${m.MetricStat.Metric.MetricName}`,
    );
    assert.deepEqual(names.sort(), ['opx/SignalsIngested', 'opx/SignalsRejected']);
    assert.equal(found.Threshold, 10);
  });

  it('every alarm notifies the ops topic directly, on alarm and on recovery', () => {
    const opsTopic = resourcesOfType(built.json, 'AWS::SNS::Topic').find(([, t]) => t.Properties!.TopicName === 'opx-ops')!;
    for (const found of alarms) {
      assert.deepEqual(found.AlarmActions, [{ Ref: opsTopic[0] }], `${found.AlarmName} alarm action`);
      assert.deepEqual(found.OKActions, [{ Ref: opsTopic[0] }], `${found.AlarmName} OK action`);
    }
    // The ops topic must not route through opx: nothing of opx subscribes to it.
    for (const [, subscription] of resourcesOfType(built.json, 'AWS::SNS::Subscription')) {
      assert.notDeepEqual(subscription.Properties!.TopicArn, { Ref: opsTopic[0] });
    }
  });

  it('an existing ops topic replaces the created one', () => {
    const opsTopicArn = 'arn:aws:sns:eu-west-1:123456789012:platform-ops';
    const custom = buildStack({ opsTopicArn });
    const topics = resourcesOfType(custom.json, 'AWS::SNS::Topic').map(([, t]) => t.Properties!.TopicName);
    assert.ok(!topics.includes('opx-ops'));
    for (const [, found] of resourcesOfType(custom.json, 'AWS::CloudWatch::Alarm')) {
      assert.deepEqual(found.Properties!.AlarmActions, [opsTopicArn]);
    }
  });

  it('one dashboard shows it all', () => {
    const dashboards: [string, CfnResource][] = resourcesOfType(built.json, 'AWS::CloudWatch::Dashboard');
    assert.equal(dashboards.length, 1);
    assert.equal(dashboards[0][1].Properties!.DashboardName, 'opx-overview');
    const body = JSON.stringify(dashboards[0][1].Properties!.DashboardBody);
    for (const needle of ['SignalsIngested', 'EndToEndLagMs', 'IteratorAge', 'ApproximateNumberOfMessagesVisible', '5XXError']) {
      assert.ok(body.includes(needle), `dashboard shows ${needle}`);
    }
  });
});
