import { Duration } from 'aws-cdk-lib';
import * as apigw from 'aws-cdk-lib/aws-apigateway';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as actions from 'aws-cdk-lib/aws-cloudwatch-actions';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { OpxFunction, StoreTable, StoreTables } from './function';
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
/** Window of every alarm on the paging path (rule, topic, DLQ): a lost page must be noticed within minutes. */
export const PAGING_ALARM_PERIOD = Duration.minutes(1);
/** A function whose longest run exceeds this share of its timeout is about to be cut off. */
export const NEAR_TIMEOUT_PERCENT = 80;
/** API client errors above this share of requests (over {@link HEALTH_ALARM_PERIOD}) are an alarm. */
export const API_4XX_PERCENT_THRESHOLD = 10;
/** API requests refused by stage throttling (429) above this share of requests are an alarm. */
export const API_429_PERCENT_THRESHOLD = 1;
/** The API rate alarms stay quiet below this many requests per window: two failed calls of three are not an outage. */
export const API_RATE_MIN_REQUESTS = 20;
/** Count of API requests answered 429, from the access log (API Gateway has no metric of its own for it). */
export const METRIC_API_THROTTLED = 'ApiThrottledRequests';
/**
 * The DynamoDB operations the store sends (single-item writes inside a transaction are counted
 * under TransactWriteItems); their throttles and system errors are watched per table.
 */
export const STORE_OPERATIONS = ['GetItem', 'Query', 'Scan', 'PutItem', 'TransactWriteItems'] as const;

/** An EventBridge rule to watch, by its literal name (a Ref to a rule on a custom bus is `bus|rule`). */
export interface WatchedRule {
  /** The rule's name. */
  readonly ruleName: string;
  /** The custom bus it is on; absent for the default bus (its metrics carry no bus dimension). */
  readonly eventBusName?: string;
  /** On the paging path: watched with {@link PAGING_ALARM_PERIOD}. */
  readonly paging?: boolean;
}

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
  /** Short names in `deadLetterQueues` of the queues on the paging path. */
  readonly pagingDeadLetterQueues: string[];
  /** Every EventBridge rule. */
  readonly rules: WatchedRule[];
  /** The paging topic. */
  readonly pagingTopic: sns.ITopic;
  /** The store's tables. */
  readonly tables: StoreTables;
  /** Functions whose runs are long by design (a cut-off run is silent work lost): watched for nearing their timeout. */
  readonly longRunning: OpxFunction[];
  /** The REST API. */
  readonly api: apigw.RestApi;
  /** The API's access log group (the 429 count is a metric filter on it). */
  readonly apiAccessLogs: logs.ILogGroup;
  /** Minutes without an ingested signal before the alarm fires. */
  readonly noSignalsPeriodMinutes: number;
  /** p99 end-to-end lag threshold in ms. */
  readonly endToEndLagP99ThresholdMs: number;
  /** Rejected-signal percentage threshold. */
  readonly rejectedSignalsPercentThreshold: number;
}

/**
 * Alarms on opx itself — errors and throttles per function, asynchronous events dropped or not
 * delivered to their failure queue, long runs near their timeout, dead-letter queue depth,
 * EventBridge targets that failed or could not be dead-lettered, failed paging deliveries,
 * DynamoDB throttles and system errors per table, fan-out iterator age, no signals ingested,
 * end-to-end lag, rejected-signal rate, API 5xx, 4xx and 429 rates — and one dashboard.
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

    for (const fn of props.functions.filter((f) => f.failureQueue !== undefined)) {
      // Asynchronous invocations fail silently unless these are watched: an event dropped
      // (too old, or retries exhausted without a destination) or one the on-failure
      // destination refused never reaches the failure queue and its depth alarm.
      for (const [metricName, suffix, what] of [
        ['AsyncEventsDropped', 'async-events-dropped', 'dropped asynchronous events without running them'],
        ['DestinationDeliveryFailures', 'destination-delivery-failures', 'could not deliver failed events to its failure queue'],
      ] as const) {
        this.alarm(`${fn.node.id}${metricName}`, {
          alarmName: `${prefix}${fn.name}-${suffix}`,
          alarmDescription: `opx function ${fn.name} ${what}: those events are lost unless the source still holds them`,
          metric: fn.function.metric(metricName, { period: HEALTH_ALARM_PERIOD, statistic: 'Sum' }),
          threshold: 1,
          comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
          treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
        });
      }
    }

    for (const fn of props.longRunning) {
      const timeout = fn.function.timeout;
      if (timeout === undefined) {
        throw new Error(`${fn.name} has no timeout to watch`);
      }
      this.alarm(`${fn.node.id}NearTimeout`, {
        alarmName: `${prefix}${fn.name}-near-timeout`,
        alarmDescription: `opx function ${fn.name} ran longer than ${NEAR_TIMEOUT_PERCENT}% of its ${timeout.toSeconds()} s timeout: the next run may be cut off`,
        metric: fn.function.metricDuration({ period: HEALTH_ALARM_PERIOD, statistic: 'Maximum' }),
        threshold: (timeout.toMilliseconds() * NEAR_TIMEOUT_PERCENT) / 100,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      });
    }

    for (const rule of props.rules) {
      const period = rule.paging ? PAGING_ALARM_PERIOD : HEALTH_ALARM_PERIOD;
      const dimensionsMap: Record<string, string> = { RuleName: rule.ruleName };
      if (rule.eventBusName !== undefined) {
        dimensionsMap.EventBusName = rule.eventBusName;
      }
      for (const [metricName, suffix, what] of [
        ['FailedInvocations', 'failed-invocations', 'could not deliver events to its target (retries exhausted)'],
        ['InvocationsFailedToBeSentToDlq', 'dlq-failures', 'could not put undeliverable events in its dead-letter queue: they are lost'],
      ] as const) {
        this.alarm(`${rule.ruleName}${metricName}`, {
          alarmName: `${prefix}rule-${rule.ruleName}-${suffix}`,
          alarmDescription: `EventBridge rule ${rule.ruleName} ${what}`,
          metric: new cloudwatch.Metric({ namespace: 'AWS/Events', metricName, dimensionsMap, period, statistic: 'Sum' }),
          threshold: 1,
          comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
          treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
        });
      }
    }

    this.alarm('PagingNotificationsFailed', {
      alarmName: `${prefix}paging-notifications-failed`,
      alarmDescription: 'the paging topic could not deliver a page to a subscriber (pager endpoint, e-mail): page by hand and check the subscription',
      metric: props.pagingTopic.metricNumberOfNotificationsFailed({ period: PAGING_ALARM_PERIOD, statistic: 'Sum' }),
      threshold: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });

    for (const table of ['events', 'idempotency', 'projections'] as const satisfies readonly StoreTable[]) {
      const construct = props.tables[table];
      const dynamo = (metricName: string, dimensionsMap: Record<string, string>) =>
        new cloudwatch.Metric({ namespace: 'AWS/DynamoDB', metricName, dimensionsMap, period: HEALTH_ALARM_PERIOD, statistic: 'Sum' });
      const perOperation = (metricName: string) =>
        Object.fromEntries(
          STORE_OPERATIONS.map((operation) => [
            `${metricName.charAt(0).toLowerCase()}${operation}`,
            dynamo(metricName, { TableName: construct.tableName, Operation: operation }),
          ]),
        );
      const sum = (metrics: Record<string, cloudwatch.IMetric>) =>
        Object.keys(metrics)
          .map((id) => `FILL(${id}, 0)`)
          .join(' + ');
      const throttles = {
        ...perOperation('ThrottledRequests'),
        reads: dynamo('ReadThrottleEvents', { TableName: construct.tableName }),
        writes: dynamo('WriteThrottleEvents', { TableName: construct.tableName }),
      };
      this.alarm(`${table}TableThrottles`, {
        alarmName: `${prefix}table-${table}-throttles`,
        alarmDescription: `DynamoDB throttled requests on the ${table} table: commits are retried, then fail as Unavailable`,
        metric: new cloudwatch.MathExpression({ label: `${table} throttles`, expression: sum(throttles), usingMetrics: throttles, period: HEALTH_ALARM_PERIOD }),
        threshold: 1,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      });
      const systemErrors = perOperation('SystemErrors');
      this.alarm(`${table}TableSystemErrors`, {
        alarmName: `${prefix}table-${table}-system-errors`,
        alarmDescription: `DynamoDB answered requests on the ${table} table with internal errors (HTTP 500)`,
        metric: new cloudwatch.MathExpression({ label: `${table} system errors`, expression: sum(systemErrors), usingMetrics: systemErrors, period: HEALTH_ALARM_PERIOD }),
        threshold: 1,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      });
    }

    for (const [name, queue] of Object.entries(props.deadLetterQueues)) {
      const period = props.pagingDeadLetterQueues.includes(name) ? PAGING_ALARM_PERIOD : HEALTH_ALARM_PERIOD;
      this.alarm(`${name}DeadLetters`, {
        alarmName: `${prefix}${name}-dead-letters`,
        alarmDescription: `opx dead-letter queue ${name} holds messages: see the README's redrive runbook`,
        metric: queue.metricApproximateNumberOfMessagesVisible({ period, statistic: 'Maximum' }),
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

    const requests = props.api.metricCount({ period: HEALTH_ALARM_PERIOD, statistic: 'Sum' });
    const rate = (label: string, failures: cloudwatch.IMetric) =>
      new cloudwatch.MathExpression({
        label,
        expression: `IF(FILL(requests, 0) >= ${API_RATE_MIN_REQUESTS}, 100 * FILL(failures, 0) / requests, 0)`,
        usingMetrics: { requests, failures },
        period: HEALTH_ALARM_PERIOD,
      });
    this.alarm('Api4xxRate', {
      alarmName: `${prefix}api-4xx-rate`,
      alarmDescription: `more than ${API_4XX_PERCENT_THRESHOLD}% of opx API requests were refused (4xx): callers lost their role, sign wrongly or send what the API refuses (access log: status, userArn)`,
      metric: rate('API 4xx (%)', props.api.metricClientError({ period: HEALTH_ALARM_PERIOD, statistic: 'Sum' })),
      threshold: API_4XX_PERCENT_THRESHOLD,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });
    const throttled = new logs.MetricFilter(this, 'ApiThrottledFilter', {
      logGroup: props.apiAccessLogs,
      metricNamespace: OPX_METRIC_NAMESPACE,
      metricName: METRIC_API_THROTTLED,
      filterPattern: logs.FilterPattern.stringValue('$.status', '=', '429'),
      metricValue: '1',
      defaultValue: 0,
    });
    this.alarm('Api429Rate', {
      alarmName: `${prefix}api-429-rate`,
      alarmDescription: `more than ${API_429_PERCENT_THRESHOLD}% of opx API requests were throttled (429) at the stage limit, which is sized to the incident-api function's reserved concurrency: raise reservedConcurrency.incident-api if the load is real`,
      metric: rate('API 429 (%)', throttled.metric({ period: HEALTH_ALARM_PERIOD, statistic: 'Sum' })),
      threshold: API_429_PERCENT_THRESHOLD,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
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
        title: 'EventBridge failed invocations',
        left: props.rules.map(
          (rule) =>
            new cloudwatch.Metric({
              namespace: 'AWS/Events',
              metricName: 'FailedInvocations',
              dimensionsMap: rule.eventBusName === undefined ? { RuleName: rule.ruleName } : { RuleName: rule.ruleName, EventBusName: rule.eventBusName },
              period,
              statistic: 'Sum',
              label: rule.ruleName,
            }),
        ),
        width: 12,
      }),
      new cloudwatch.GraphWidget({
        title: 'DynamoDB read and write throttle events',
        left: (['events', 'idempotency', 'projections'] as const).flatMap((table) =>
          ['ReadThrottleEvents', 'WriteThrottleEvents'].map(
            (metricName) =>
              new cloudwatch.Metric({
                namespace: 'AWS/DynamoDB',
                metricName,
                dimensionsMap: { TableName: props.tables[table].tableName },
                period,
                statistic: 'Sum',
                label: `${table} ${metricName}`,
              }),
          ),
        ),
        width: 12,
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
