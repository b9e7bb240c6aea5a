import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { DEFAULT_RESERVED_CONCURRENCY, FUNCTION_NAMES, LAMBDA_UNRESERVED_CONCURRENCY_MIN, reservedConcurrencyTotal } from '../lib/config';
import { NEAR_TIMEOUT_PERCENT, STORE_OPERATIONS } from '../lib/monitoring';
import { FUNCTION_SPECS } from '../lib/opx-stack';
import { CfnResource, CfnTemplate, INFRA_DIR, buildStack, logicalId, resourcesOfType } from './support';

const built = buildStack();
const alarms = resourcesOfType(built.json, 'AWS::CloudWatch::Alarm').map(([, alarm]) => alarm.Properties!);
const byName = new Map(alarms.map((alarm) => [alarm.AlarmName as string, alarm]));

function alarm(name: string): Record<string, any> {
  const found = byName.get(name);
  assert.ok(found, `alarm ${name} exists`);
  return found;
}

/** The metrics an alarm reads: its own, or those of its math expression. */
function metricsOf(found: Record<string, any>): { Namespace: string; MetricName: string; Dimensions?: { Name: string; Value: unknown }[]; Period: number }[] {
  if (found.MetricName) {
    return [{ Namespace: found.Namespace, MetricName: found.MetricName, Dimensions: found.Dimensions, Period: found.Period }];
  }
  return found.Metrics.filter((m: { MetricStat?: unknown }) => m.MetricStat).map(
    (m: { MetricStat: { Metric: Record<string, any>; Period: number } }) => ({ ...m.MetricStat.Metric, Period: m.MetricStat.Period }),
  );
}

/** Every alarm reading `namespace/metricName` with exactly these dimensions (order aside). */
function alarmsOn(namespace: string, metricName: string, dimensions: Record<string, unknown>): Record<string, any>[] {
  const wanted = JSON.stringify(Object.entries(dimensions).sort(([a], [b]) => a.localeCompare(b)));
  return alarms.filter((a) =>
    metricsOf(a).some(
      (m) =>
        m.Namespace === namespace &&
        m.MetricName === metricName &&
        JSON.stringify((m.Dimensions ?? []).map((d) => [d.Name, d.Value]).sort(([a], [b]) => String(a).localeCompare(String(b)))) === wanted,
    ),
  );
}

describe('alarms on what can fail silently', () => {
  it('every EventBridge rule alarms on failed invocations and on failures to dead-letter, with the bus dimension on the opx bus', () => {
    const rules = resourcesOfType(built.json, 'AWS::Events::Rule');
    assert.equal(rules.length, 7);
    for (const [, rule] of rules) {
      const name = rule.Properties!.Name as string;
      const dimensions: Record<string, unknown> = { RuleName: name };
      if (rule.Properties!.EventBusName !== undefined) {
        // Metrics of a rule on a custom bus carry both dimensions; RuleName alone is the default bus.
        dimensions.EventBusName = 'opx-bus';
      }
      for (const metric of ['FailedInvocations', 'InvocationsFailedToBeSentToDlq']) {
        const found = alarmsOn('AWS/Events', metric, dimensions);
        assert.equal(found.length, 1, `${name} ${metric}`);
        assert.equal(found[0].Threshold, 1);
        assert.equal(found[0].Period, name === 'opx-paging' ? 60 : 300, `${name} ${metric} period`);
      }
    }
  });

  it('the paging path is watched every minute: rule, topic deliveries and dead letters', () => {
    const topicName = built.json.Resources[logicalId(built, built.stack.paging.topic)].Properties!.TopicName;
    const failed = alarmsOn('AWS/SNS', 'NumberOfNotificationsFailed', {
      TopicName: { 'Fn::GetAtt': [logicalId(built, built.stack.paging.topic), 'TopicName'] },
    });
    assert.equal(topicName, 'opx-paging');
    assert.equal(failed.length, 1);
    assert.equal(failed[0].Period, 60);
    const dlq = alarm('opx-self-paging-failed-dead-letters');
    assert.equal(dlq.Period, 60);
  });

  it('every asynchronously invoked function alarms on dropped events and on failure-destination delivery failures', () => {
    const asyncFunctions = FUNCTION_NAMES.filter((name) => FUNCTION_SPECS[name].asyncInvoke !== undefined);
    assert.deepEqual(asyncFunctions, ['signal-ingest', 'detection', 'evidence', 'confidence', 'promotion', 'sweeper']);
    for (const name of asyncFunctions) {
      const fnId = logicalId(built, built.stack.functions[name].function);
      for (const metric of ['AsyncEventsDropped', 'DestinationDeliveryFailures']) {
        assert.equal(alarmsOn('AWS/Lambda', metric, { FunctionName: { Ref: fnId } }).length, 1, `${name} ${metric}`);
      }
    }
  });

  it('sweeper and replay alarm when their longest run passes 80% of their timeout', () => {
    for (const name of ['sweeper', 'replay'] as const) {
      const fn = resourcesOfType(built.json, 'AWS::Lambda::Function').find(([, f]) => f.Properties!.FunctionName === `opx-${name}`)!;
      const found = alarmsOn('AWS/Lambda', 'Duration', { FunctionName: { Ref: fn[0] } });
      assert.equal(found.length, 1, name);
      assert.equal(found[0].Statistic, 'Maximum');
      assert.equal(found[0].Threshold, (fn[1].Properties!.Timeout * 1000 * NEAR_TIMEOUT_PERCENT) / 100);
      assert.equal(found[0].ComparisonOperator, 'GreaterThanThreshold');
    }
  });

  it('every table alarms on throttles and on system errors of every operation the store sends', () => {
    for (const table of ['events', 'idempotency', 'projections'] as const) {
      const tableName = { Ref: logicalId(built, built.stack.tables[table]) };
      const throttles = alarm(`opx-self-table-${table}-throttles`);
      const errors = alarm(`opx-self-table-${table}-system-errors`);
      for (const operation of STORE_OPERATIONS) {
        assert.ok(alarmsOn('AWS/DynamoDB', 'ThrottledRequests', { TableName: tableName, Operation: operation }).includes(throttles), `${table} ${operation} throttles`);
        assert.ok(alarmsOn('AWS/DynamoDB', 'SystemErrors', { TableName: tableName, Operation: operation }).includes(errors), `${table} ${operation} errors`);
      }
      for (const metric of ['ReadThrottleEvents', 'WriteThrottleEvents']) {
        assert.ok(alarmsOn('AWS/DynamoDB', metric, { TableName: tableName }).includes(throttles), `${table} ${metric}`);
      }
      for (const found of [throttles, errors]) {
        const expression = found.Metrics.find((m: { Expression?: string }) => m.Expression).Expression as string;
        const ids = found.Metrics.filter((m: { MetricStat?: unknown }) => m.MetricStat).map((m: { Id: string }) => m.Id);
        // FILL: a sum of series with a missing point is missing, which would hide the others.
        for (const id of ids) {
          assert.ok(expression.includes(`FILL(${id}, 0)`), `${found.AlarmName} fills ${id}`);
        }
        assert.equal(found.Threshold, 1);
      }
    }
  });

  it('API 4xx and 429 rates are alarms; 429s are counted from the access log', () => {
    const filters = resourcesOfType(built.json, 'AWS::Logs::MetricFilter');
    assert.equal(filters.length, 1);
    const filter = filters[0][1].Properties!;
    assert.equal(filter.LogGroupName.Ref, logicalId(built, built.stack.api.accessLogs));
    assert.equal(filter.FilterPattern, '{ $.status = "429" }');
    const transform = filter.MetricTransformations[0];
    for (const [name, metric] of [
      ['opx-self-api-4xx-rate', ['AWS/ApiGateway', '4XXError']],
      ['opx-self-api-429-rate', [transform.MetricNamespace, transform.MetricName]],
    ] as const) {
      const names = metricsOf(alarm(name)).map((m) => `${m.Namespace}/${m.MetricName}`).sort();
      assert.deepEqual(names, ['AWS/ApiGateway/Count', metric.join('/')].sort(), name);
    }
  });
});

describe('reserved concurrency is stated before deploying', () => {
  const reservedInTemplate = (json: CfnTemplate) =>
    resourcesOfType(json, 'AWS::Lambda::Function').reduce((sum, [, f]) => sum + f.Properties!.ReservedConcurrentExecutions, 0);
  const outputs = (b: ReturnType<typeof buildStack>) => (b.template.toJSON() as { Outputs: Record<string, { Value: string; Description: string }> }).Outputs;

  it('the output states the sum of every function\'s reserved concurrency and the quota it needs', () => {
    for (const b of [built, buildStack({ reservedConcurrency: '{"signal-ingest":40,"replay":1}' })]) {
      const total = reservedInTemplate(b.json);
      const output = outputs(b).ReservedConcurrencyTotal;
      assert.equal(output.Value, String(total));
      assert.ok(output.Description.includes(`at least ${total + LAMBDA_UNRESERVED_CONCURRENCY_MIN}`), output.Description);
    }
  });

  it('synth says it too', () => {
    const infos = built.stack.node.metadata.filter((entry) => entry.type === 'aws:cdk:info').map((entry) => String(entry.data));
    const total = reservedInTemplate(built.json);
    assert.ok(infos.some((info) => info.includes(`reserves ${total} concurrent`) && info.includes(`at least ${total + 100}`)), infos.join('\n'));
  });

  it('the README states the default total and the quota it needs', () => {
    const readme = fs.readFileSync(path.join(INFRA_DIR, 'README.md'), 'utf8');
    const total = reservedConcurrencyTotal(DEFAULT_RESERVED_CONCURRENCY);
    assert.equal(total, reservedInTemplate(built.json));
    assert.match(readme, new RegExp(`defaults total ${total}\\b`));
    assert.match(readme, new RegExp(`at least ${total + LAMBDA_UNRESERVED_CONCURRENCY_MIN}\\b`));
  });
});

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
    for (const needle of ['SignalsIngested', 'EndToEndLagMs', 'IteratorAge', 'ApproximateNumberOfMessagesVisible', '5XXError', 'FailedInvocations', 'WriteThrottleEvents']) {
      assert.ok(body.includes(needle), `dashboard shows ${needle}`);
    }
  });
});
