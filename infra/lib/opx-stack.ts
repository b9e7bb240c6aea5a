import { Annotations, Aspects, CfnOutput, Duration, Stack, StackProps } from 'aws-cdk-lib';
import * as events from 'aws-cdk-lib/aws-events';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { IncidentApi } from './api';
import {
  FunctionName,
  LAMBDA_UNRESERVED_CONCURRENCY_MIN,
  OpxConfig,
  apiStageThrottle,
  assertLambdaAssets,
  reservedConcurrencyTotal,
  validateConfig,
} from './config';
import { AsyncInvokeSettings, OpxFunction, TableAccess } from './function';
import { SignalEntryPoints } from './ingest';
import { Monitoring } from './monitoring';
import { LintSuppressions } from './nag';
import { Paging } from './paging';
import { Pipeline } from './pipeline';
import { STAGE_FUNCTIONS } from './stages';
import { OpxTables } from './tables';
import { MessagingKey, secureTopic } from './topics';

/** Props of {@link OpxStack}. */
export interface OpxStackProps extends StackProps {
  /** The deployment's configuration (see `lib/config.ts` and the README's parameter table). */
  readonly config: OpxConfig;
}

/** Lambda async retries after a function error (its maximum); then the event goes to the failure queue. */
export const ASYNC_RETRY_ATTEMPTS = 2;
/** Signals wait in Lambda's queue for up to Lambda's maximum, 6 hours, while ingest is throttled. */
export const INGEST_MAX_EVENT_AGE = Duration.hours(6);
/** A stage notification older than an hour is no longer needed: the sweeper has re-driven the work. */
export const STAGE_MAX_EVENT_AGE = Duration.hours(1);

/** How one function runs and what it may touch. */
export interface FunctionSpec {
  readonly description: string;
  readonly tableAccess: TableAccess;
  readonly timeout: Duration;
  readonly memorySize?: number;
  readonly asyncInvoke?: AsyncInvokeSettings;
}

const stageSpec = (stage: string): FunctionSpec => ({
  description: `opx ${stage} stage: reads its input event, decides, commits its output`,
  tableAccess: 'read-write',
  timeout: Duration.seconds(60),
  asyncInvoke: { retryAttempts: ASYNC_RETRY_ATTEMPTS, maxEventAge: STAGE_MAX_EVENT_AGE },
});

/**
 * What each function is allowed and how it runs. Every pipeline stage commits transactions
 * touching all three tables, so stages read and write all three; `incident-api` writes (human
 * commands, `POST /signals`); `replay` only reads; `fanout` reads the stream and may only record rejects and complete pages (see `Pipeline`).
 */
export const FUNCTION_SPECS: Record<FunctionName, FunctionSpec> = {
  'signal-ingest': {
    description: 'opx ingest: CloudWatch alarm events, alarm actions and SNS alarm notifications become signals',
    tableAccess: 'read-write',
    timeout: Duration.seconds(30),
    asyncInvoke: { retryAttempts: ASYNC_RETRY_ATTEMPTS, maxEventAge: INGEST_MAX_EVENT_AGE },
  },
  fanout: {
    description: 'opx fan-out: publishes each committed event (a pointer) from the events stream to the opx bus',
    tableAccess: 'none',
    timeout: Duration.seconds(60),
  },
  detection: stageSpec('detection'),
  evidence: stageSpec('evidence'),
  confidence: stageSpec('confidence'),
  promotion: stageSpec('promotion'),
  sweeper: {
    description: 'opx sweeper: re-drives pending work whose notification was lost',
    tableAccess: 'read-write',
    // Shorter than the 5-minute schedule, so two sweeps never overlap.
    timeout: Duration.minutes(4),
    asyncInvoke: { retryAttempts: 0, maxEventAge: Duration.minutes(4) },
  },
  replay: {
    description: 'opx replay: verifies hash chains, projections and decisions (read-only)',
    tableAccess: 'read',
    timeout: Duration.minutes(15),
    memorySize: 1024,
  },
  'incident-api': {
    description: 'opx incident API (API Gateway REST proxy, IAM-authorised)',
    tableAccess: 'read-write',
    // API Gateway's integration timeout is 29 s; running longer would only waste the work.
    timeout: Duration.seconds(29),
  },
};

/**
 * opx on AWS: the tables, the nine functions, the event routing, the signal entry points, the
 * incident API with its roles, paging, and the alarms and dashboard that watch opx itself.
 */
export class OpxStack extends Stack {
  /** The tables. */
  readonly tables: OpxTables;
  /** The functions by name. */
  readonly functions: Record<FunctionName, OpxFunction>;
  /** The opx event bus. */
  readonly bus: events.EventBus;
  /** The API. */
  readonly api: IncidentApi;
  /** Paging. */
  readonly paging: Paging;
  /** Alarms and dashboard. */
  readonly monitoring: Monitoring;
  /** Ingest entry points. */
  readonly entryPoints: SignalEntryPoints;
  /** Event routing. */
  readonly pipeline: Pipeline;
  /** Where opx's own alarms go. */
  readonly opsTopic: sns.ITopic;

  constructor(scope: Construct, id: string, props: OpxStackProps) {
    super(scope, id, props);
    const config = props.config;
    validateConfig(config);
    assertLambdaAssets(config.lambdaAssetDir);
    const prefix = config.prefix;
    const logRetention = config.logRetentionDays as logs.RetentionDays;

    // cfn-lint and checkov findings opx accepts, each with its reason (lib/nag.ts).
    Aspects.of(this).add(new LintSuppressions());

    this.tables = new OpxTables(this, 'Tables', { prefix, restored: config.restoredTables });
    const messaging = new MessagingKey(this, 'Messaging', { prefix });

    const busName = `${prefix}-bus`;
    this.bus = new events.EventBus(this, 'Bus', { eventBusName: busName });
    this.bus.archive('Archive', {
      archiveName: `${prefix}-bus-archive`,
      description: 'Every opx notification, for replaying a window of fan-out after an outage',
      eventPattern: { source: ['opx'] },
      retention: Duration.days(config.archiveRetentionDays),
    });

    const environment: Partial<Record<FunctionName, Record<string, string>>> = {
      fanout: { OPX_BUS_NAME: this.bus.eventBusName },
      sweeper: { OPX_SWEEP_AGE_MS: String(config.sweepAgeMs), OPX_BUS_NAME: this.bus.eventBusName },
    };
    const functions: Partial<Record<FunctionName, OpxFunction>> = {};
    for (const [name, spec] of Object.entries(FUNCTION_SPECS) as [FunctionName, FunctionSpec][]) {
      functions[name] = new OpxFunction(this, pascal(name), {
        prefix,
        tablePrefix: this.tables.tablePrefix,
        name,
        description: spec.description,
        assetDir: config.lambdaAssetDir,
        tables: this.tables,
        tableAccess: spec.tableAccess,
        environment: environment[name],
        reservedConcurrency: config.reservedConcurrency[name],
        timeout: spec.timeout,
        memorySize: spec.memorySize,
        logRetention,
        tracing: config.tracing,
        asyncInvoke: spec.asyncInvoke,
      });
    }
    this.functions = functions as Record<FunctionName, OpxFunction>;
    const fn = this.functions;

    this.pipeline = new Pipeline(this, 'Pipeline', {
      prefix,
      eventsTable: this.tables.events,
      projectionsTable: this.tables.projections,
      bus: this.bus,
      fanout: fn.fanout,
      stages: Object.fromEntries(STAGE_FUNCTIONS.map((name) => [name, fn[name]])),
      sweeper: fn.sweeper,
    });

    this.entryPoints = new SignalEntryPoints(this, 'Ingest', {
      prefix,
      ingest: fn['signal-ingest'],
      key: messaging,
      existingAlarmTopicArns: config.existingAlarmTopicArns,
      archiveRetentionDays: config.archiveRetentionDays,
    });

    this.api = new IncidentApi(this, 'Api', {
      prefix,
      handler: fn['incident-api'].function,
      throttle: apiStageThrottle(config.reservedConcurrency['incident-api']),
      logRetention,
      tracing: config.tracing,
      accountRole: config.apiGatewayAccountRole,
      webAclArn: config.webAclArn,
      extraRoleArns: config.extraRoleArns,
    });
    fn['incident-api'].function.addEnvironment('OPX_ROLE_MAP', this.toJsonString(this.api.roleMap));

    this.paging = new Paging(this, 'Paging', { prefix, bus: this.bus, key: messaging });

    this.opsTopic = config.opsTopicArn
      ? sns.Topic.fromTopicArn(this, 'OpsTopic', config.opsTopicArn)
      : secureTopic(this, 'OpsTopic', {
          topicName: `${prefix}-ops`,
          displayName: 'opx self-monitoring',
          key: messaging,
          allowCloudWatchAlarms: true,
        });

    const deadLetterQueues: Record<string, sqs.IQueue> = { 'fanout-failed': this.pipeline.fanoutFailures, 'paging-failed': this.paging.deadLetters };
    for (const f of Object.values(this.functions)) {
      if (f.failureQueue) {
        deadLetterQueues[`${f.name}-failed`] = f.failureQueue;
      }
    }
    this.monitoring = new Monitoring(this, 'Monitoring', {
      prefix,
      opsTopic: this.opsTopic,
      functions: Object.values(this.functions),
      fanout: fn.fanout,
      deadLetterQueues,
      pagingDeadLetterQueues: ['paging-failed'],
      rules: [
        ...Object.values(this.pipeline.stageRules).map((rule) => ({ ruleName: literalName(rule), eventBusName: busName })),
        { ruleName: literalName(this.paging.rule), eventBusName: busName, paging: true },
        { ruleName: literalName(this.pipeline.sweepSchedule) },
        { ruleName: literalName(this.entryPoints.alarmRule) },
      ],
      pagingTopic: this.paging.topic,
      tables: this.tables,
      longRunning: [fn.sweeper, fn.replay],
      api: this.api.api,
      apiAccessLogs: this.api.accessLogs,
      noSignalsPeriodMinutes: config.noSignalsPeriodMinutes,
      endToEndLagP99ThresholdMs: config.endToEndLagP99ThresholdMs,
      rejectedSignalsPercentThreshold: config.rejectedSignalsPercentThreshold,
    });

    // Reservations come out of the account's regional Lambda quota, which must keep 100
    // unreserved: a new account (quota 10) cannot deploy opx until the quota is raised.
    const reservedTotal = reservedConcurrencyTotal(config.reservedConcurrency);
    const quotaNeeded = reservedTotal + LAMBDA_UNRESERVED_CONCURRENCY_MIN;
    const concurrencyNote =
      `opx reserves ${reservedTotal} concurrent Lambda executions in total; the account's concurrent-executions quota ` +
      `in this region must be at least ${quotaNeeded} (${LAMBDA_UNRESERVED_CONCURRENCY_MIN} stay unreserved). ` +
      'Check: aws lambda get-account-settings --query AccountLimit.ConcurrentExecutions';
    new CfnOutput(this, 'ReservedConcurrencyTotal', { value: String(reservedTotal), description: concurrencyNote });
    Annotations.of(this).addInfo(concurrencyNote);
    new CfnOutput(this, 'BusName', { value: this.bus.eventBusName });
    new CfnOutput(this, 'AlarmsTopicArn', { value: this.entryPoints.alarmsTopic.topicArn, description: 'Point CloudWatch alarm actions here (Alertmanager reaches POST /signals through a SigV4 signing relay)' });
    new CfnOutput(this, 'PagingTopicArn', { value: this.paging.topic.topicArn, description: 'Subscribe the pager here' });
    new CfnOutput(this, 'OpsTopicArn', { value: this.opsTopic.topicArn, description: "Where opx's own alarms go" });
  }
}

/** The name a rule was given (its Ref is `bus|rule` on a custom bus, useless as a metric dimension). */
function literalName(rule: events.Rule): string {
  const name = (rule.node.defaultChild as events.CfnRule).name;
  if (name === undefined) {
    throw new Error(`${rule.node.path} has no name`);
  }
  return name;
}

function pascal(name: string): string {
  return name
    .split('-')
    .map((part) => part.charAt(0).toUpperCase() + part.slice(1))
    .join('');
}
