import { Duration } from 'aws-cdk-lib';
import * as apigw from 'aws-cdk-lib/aws-apigateway';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as actions from 'aws-cdk-lib/aws-cloudwatch-actions';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { OpxFunction } from './function';
import { selfAlarmPrefix } from './ingest';

/**
 * The metrics contract with the functions: CloudWatch embedded-metric-format lines in
 * namespace `opx`, emitted with an empty dimension set (`"Dimensions": [[]]`), so the
 * alarms below match them exactly.
 */
export const OPX_METRIC_NAMESPACE = 'opx';
/** Count of signals accepted by ingest (duplicates included: they prove the intake is alive). */
export const METRIC_SIGNALS_INGESTED = 'SignalsIngested';
/** Count of payloads ingest refused (recorded as rejects). */
export const METRIC_SIGNALS_REJECTED = 'SignalsRejected';
/** Milliseconds from a signal's event time to the incident it opened or joined. */
export const METRIC_END_TO_END_LAG_MS = 'EndToEndLagMs';

/** Fan-out iterator age above which the stream is falling behind. */
export const ITERATOR_AGE_THRESHOLD_MS = 300_000;
/** Window of the rejected-rate and lag alarms. */
export const QUALITY_ALARM_PERIOD = Duration.minutes(15);
/** Window of the per-function and DLQ alarms. */
export const HEALTH_ALARM_PERIOD = Duration.minutes(5);

/** Props of {@link Monitoring}. */
export interface MonitoringProps {
  /** Name prefix (alarm names start with `<prefix>-self-`). */
  readonly prefix: string;
  /** Where alarm notifications go; must not depend on opx itself. */
  readonly opsTopic: sns.ITopic;
  /** Every function. */
  readonly functions: OpxFunction[];
  /** The fan-out (iterator age). */
  readonly fanout: OpxFunction;
  /** Every dead-letter queue, by a short name. */
  readonly deadLetterQueues: Record<string, sqs.IQueue>;
  /** The REST API. */
  readonly api: apigw.RestApi;
  /** Minutes without an ingested signal before the alarm fires. */
  readonly noSignalsPeriodMinutes: number;
  /** p99 end-to-end lag threshold in ms. */
  readonly endToEndLagP99ThresholdMs: number;
  /** Rejected-signal percentage threshold. */
  readonly rejectedSignalsPercentThreshold: number;
}

/**
 * Alarms on opx itself — errors and throttles per function, dead-letter queue depth, fan-out
 * iterator age, no signals ingested, end-to-end lag, rejected-signal rate, API 5xx — and one
 * dashboard.
 *
 * Invariant: every alarm notifies the ops topic directly (CloudWatch → SNS), never through
 * opx, and every alarm name starts with `<prefix>-self-`, which the ingest rule excludes.
 */
export class Monitoring extends Construct {
  /** Every alarm. */
  readonly alarms: cloudwatch.Alarm[] = [];
  /** The dashboard. */
  readonly dashboard: cloudwatch.Dashboard;
  private readonly props: MonitoringProps;

  constructor(scope: Construct, id: string, props: MonitoringProps) {
    super(scope, id);
    this.props = props;
    const prefix = selfAlarmPrefix(props.prefix);

    for (const fn of props.functions) {
      this.alarm(`${fn.node.id}Errors`, {
        alarmName: `${prefix}${fn.name}-errors`,
        alarmDescription: `opx function ${fn.name} reported errors (see its log group ${fn.logGroup.logGroupName})`,
        metric: fn.function.metricErrors({ period: HEALTH_ALARM_PERIOD, statistic: 'Sum' }),
        threshold: 1,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      });
      this.alarm(`${fn.node.id}Throttles`, {
        alarmName: `${prefix}${fn.name}-throttles`,
        alarmDescription: `opx function ${fn.name} was throttled at its reserved concurrency`,
        metric: fn.function.metricThrottles({ period: HEALTH_ALARM_PERIOD, statistic: 'Sum' }),
        threshold: 1,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      });
    }

    for (const [name, queue] of Object.entries(props.deadLetterQueues)) {
      this.alarm(`${name}DeadLetters`, {
        alarmName: `${prefix}${name}-dead-letters`,
        alarmDescription: `opx dead-letter queue ${name} holds messages: see the README's redrive runbook`,
        metric: queue.metricApproximateNumberOfMessagesVisible({ period: HEALTH_ALARM_PERIOD, statistic: 'Maximum' }),
        threshold: 1,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      });
    }

    this.alarm('FanoutIteratorAge', {
      alarmName: `${prefix}fanout-iterator-age`,
      alarmDescription: 'opx fan-out is falling behind the events stream (records wait longer than 5 minutes)',
      metric: props.fanout.function.metric('IteratorAge', { period: Duration.minutes(1), statistic: 'Maximum' }),
      threshold: ITERATOR_AGE_THRESHOLD_MS,
      evaluationPeriods: 5,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });

    const ingested = this.opxMetric(METRIC_SIGNALS_INGESTED, 'Sum', Duration.minutes(props.noSignalsPeriodMinutes));
    this.alarm('NoSignals', {
      alarmName: `${prefix}no-signals`,
      alarmDescription: `opx ingested no signal for ${props.noSignalsPeriodMinutes} minutes: the intake (rule, topics, API) may be broken`,
      metric: ingested,
      threshold: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
      // No data is exactly the failure this alarm exists for.
      treatMissingData: cloudwatch.TreatMissingData.BREACHING,
    });

    this.alarm('EndToEndLag', {
      alarmName: `${prefix}end-to-end-lag`,
      alarmDescription: `opx p99 lag from alarm state change to incident is above ${props.endToEndLagP99ThresholdMs} ms`,
      metric: this.opxMetric(METRIC_END_TO_END_LAG_MS, 'p99', QUALITY_ALARM_PERIOD),
      threshold: props.endToEndLagP99ThresholdMs,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });

    const rejectedPercent = new cloudwatch.MathExpression({
      label: 'rejected signals (%)',
      expression: 'IF((FILL(ingested, 0) + FILL(rejected, 0)) > 0, 100 * FILL(rejected, 0) / (FILL(ingested, 0) + FILL(rejected, 0)), 0)',
      usingMetrics: {
        ingested: this.opxMetric(METRIC_SIGNALS_INGESTED, 'Sum', QUALITY_ALARM_PERIOD),
        rejected: this.opxMetric(METRIC_SIGNALS_REJECTED, 'Sum', QUALITY_ALARM_PERIOD),
      },
      period: QUALITY_ALARM_PERIOD,
    });
    this.alarm('RejectedSignalRate', {
      alarmName: `${prefix}rejected-signal-rate`,
      alarmDescription: `more than ${props.rejectedSignalsPercentThreshold}% of incoming signals were rejected: a source changed its format or a mapping is wrong (opx rejects)`,
      metric: rejectedPercent,
      threshold: props.rejectedSignalsPercentThreshold,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });

    this.alarm('Api5xx', {
      alarmName: `${prefix}api-5xx`,
      alarmDescription: 'the opx incident API returned server errors',
      metric: props.api.metricServerError({ period: HEALTH_ALARM_PERIOD, statistic: 'Sum' }),
      threshold: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });

    this.dashboard = this.buildDashboard(ingested, rejectedPercent);
  }

  private opxMetric(metricName: string, statistic: string, period: Duration): cloudwatch.Metric {
    return new cloudwatch.Metric({ namespace: OPX_METRIC_NAMESPACE, metricName, statistic, period });
  }

  private alarm(id: string, props: Omit<cloudwatch.AlarmProps, 'evaluationPeriods'> & { evaluationPeriods?: number }): cloudwatch.Alarm {
    // One period unless stated: each alarm's period is already the window it is about.
    const alarm = new cloudwatch.Alarm(this, id, { ...props, evaluationPeriods: props.evaluationPeriods ?? 1 });
    const action = new actions.SnsAction(this.props.opsTopic);
    alarm.addAlarmAction(action);
    alarm.addOkAction(action);
    this.alarms.push(alarm);
    return alarm;
  }

  private buildDashboard(ingested: cloudwatch.Metric, rejectedPercent: cloudwatch.MathExpression): cloudwatch.Dashboard {
    const props = this.props;
    const dashboard = new cloudwatch.Dashboard(this, 'Dashboard', {
      dashboardName: `${props.prefix}-overview`,
      defaultInterval: Duration.hours(6),
    });
    const fns = props.functions;
    const period = HEALTH_ALARM_PERIOD;
    dashboard.addWidgets(
      new cloudwatch.AlarmStatusWidget({ title: 'opx alarms', alarms: this.alarms, width: 24, height: 4 }),
    );
    dashboard.addWidgets(
      new cloudwatch.GraphWidget({
        title: 'Signals',
        left: [ingested.with({ period }), this.opxMetric(METRIC_SIGNALS_REJECTED, 'Sum', period)],
        right: [rejectedPercent],
        width: 8,
      }),
      new cloudwatch.GraphWidget({
        title: 'End-to-end lag (ms)',
        left: ['p50', 'p99', 'Maximum'].map((statistic) => this.opxMetric(METRIC_END_TO_END_LAG_MS, statistic, period)),
        width: 8,
      }),
      new cloudwatch.GraphWidget({
        title: 'Fan-out iterator age (ms)',
        left: [props.fanout.function.metric('IteratorAge', { period: Duration.minutes(1), statistic: 'Maximum' })],
        width: 8,
      }),
    );
    dashboard.addWidgets(
      new cloudwatch.GraphWidget({
        title: 'Invocations',
        left: fns.map((fn) => fn.function.metricInvocations({ period, statistic: 'Sum', label: fn.name })),
        width: 8,
      }),
      new cloudwatch.GraphWidget({
        title: 'Errors and throttles',
        left: fns.map((fn) => fn.function.metricErrors({ period, statistic: 'Sum', label: `${fn.name} errors` })),
        right: fns.map((fn) => fn.function.metricThrottles({ period, statistic: 'Sum', label: `${fn.name} throttles` })),
        width: 8,
      }),
      new cloudwatch.GraphWidget({
        title: 'Duration p99 (ms)',
        left: fns.map((fn) => fn.function.metricDuration({ period, statistic: 'p99', label: fn.name })),
        width: 8,
      }),
    );
    dashboard.addWidgets(
      new cloudwatch.GraphWidget({
        title: 'Dead-letter queues (messages)',
        left: Object.entries(props.deadLetterQueues).map(([name, queue]) =>
          queue.metricApproximateNumberOfMessagesVisible({ period, statistic: 'Maximum', label: name }),
        ),
        width: 12,
      }),
      new cloudwatch.GraphWidget({
        title: 'Incident API',
        left: [
          props.api.metricCount({ period, statistic: 'Sum' }),
          props.api.metricClientError({ period, statistic: 'Sum' }),
          props.api.metricServerError({ period, statistic: 'Sum' }),
        ],
        right: [props.api.metricLatency({ period, statistic: 'p99' })],
        width: 12,
      }),
    );
    return dashboard;
  }
}
