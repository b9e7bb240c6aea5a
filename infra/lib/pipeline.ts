import { Duration } from 'aws-cdk-lib';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as events from 'aws-cdk-lib/aws-events';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { SqsDlq } from 'aws-cdk-lib/aws-lambda-event-sources';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { FunctionName, SWEEP_INTERVAL } from './config';
import { OpxFunction } from './function';
import { secureQueue } from './queues';
import { STAGE_ROUTES } from './stages';

/** The `source` of every event opx publishes. */
export const OPX_EVENT_SOURCE = 'opx';

export { STAGE_ROUTES } from './stages';

/** A function the bus invokes as a stage (see `STAGE_ROUTES`). */
export type StageName = FunctionName;

/** Fan-out batch: up to this many stream records per invocation (PutEvents takes 10 per call). */
export const FANOUT_BATCH_SIZE = 100;
/** Stream retries of a failing batch before it goes to the on-failure queue (bisection halves it each time). */
export const FANOUT_RETRY_ATTEMPTS = 10;
/** Records older than this are sent to the on-failure queue (the stream keeps 24 hours). */
export const FANOUT_MAX_RECORD_AGE = Duration.hours(6);

/**
 * EventBridge → stage delivery: retries and age before the event goes to the DLQ. A lost
 * notification only delays work (the sweeper re-drives the work queue), so an hour is enough.
 */
export const STAGE_TARGET_RETRY_ATTEMPTS = 8;
/** See {@link STAGE_TARGET_RETRY_ATTEMPTS}. */
export const STAGE_TARGET_MAX_EVENT_AGE = Duration.hours(1);
/** A sweep tick older than the next tick is worthless. */
export const SWEEP_TARGET_MAX_EVENT_AGE = Duration.minutes(4);
/** See {@link SWEEP_TARGET_MAX_EVENT_AGE}. */
export const SWEEP_TARGET_RETRY_ATTEMPTS = 2;

/** The projections-table partition key under which the store records rejects (`items::kind::REJECT`). */
export const REJECT_KIND = '~reject';
/** The projections-table partition key of the work queue (`items::kind::WORK`). */
export const WORK_KIND = '~work';

/** Props of {@link Pipeline}. */
export interface PipelineProps {
  /** Name prefix. */
  readonly prefix: string;
  /** The events table (its stream feeds the fan-out). */
  readonly eventsTable: dynamodb.ITable;
  /** The projections table (the fan-out records refused stream images there as rejects). */
  readonly projectionsTable: dynamodb.ITable;
  /** The opx bus. */
  readonly bus: events.EventBus;
  /** The fan-out function. */
  readonly fanout: OpxFunction;
  /** The stage functions by name (every function `STAGE_ROUTES` names). */
  readonly stages: Partial<Record<StageName, OpxFunction>>;
  /** The sweeper. */
  readonly sweeper: OpxFunction;
}

/**
 * How committed events move: the events table's stream → `fanout` → the opx bus → one rule
 * per consumed event type → its stage function; and the sweeper on a schedule.
 *
 * Invariants: the fan-out is the only stream reader and may only read that stream and put
 * events on the opx bus; every hop has a bounded retry policy and a dead-letter queue; the
 * bus carries pointers only, so a dead-lettered notification is a delay, not a loss (the
 * sweeper re-drives pending work from the work queue).
 */
export class Pipeline extends Construct {
  /** The fan-out's on-failure queue (batches it could not publish). */
  readonly fanoutFailures: sqs.Queue;
  /** The stream event source mapping. */
  readonly streamMapping: lambda.EventSourceMapping;
  /** The stage rules by stage name. */
  readonly stageRules: Partial<Record<StageName, events.Rule>>;
  /** The sweeper schedule rule. */
  readonly sweepSchedule: events.Rule;

  constructor(scope: Construct, id: string, props: PipelineProps) {
    super(scope, id);
    const streamArn = props.eventsTable.tableStreamArn;
    if (streamArn === undefined) {
      throw new Error('the events table has no stream: the fan-out needs NEW_IMAGE on the events table');
    }

    // Exactly the four actions Lambda needs to poll this one stream, on its ARN (CDK's
    // grantStreamRead would add dynamodb:ListStreams on *).
    props.fanout.role.addToPrincipalPolicy(
      new iam.PolicyStatement({
        sid: 'ReadEventsStream',
        actions: [
          'dynamodb:DescribeStream',
          'dynamodb:GetRecords',
          'dynamodb:GetShardIterator',
          'dynamodb:ListStreams',
        ],
        resources: [streamArn],
      }),
    );
    // A stream image that fails its check is recorded as a reject (one conditional PutItem
    // under the store's `~reject` kind). Without this grant the write is denied, the record is
    // retried and the shard stays blocked until the record expires from the stream.
    props.fanout.role.addToPrincipalPolicy(
      new iam.PolicyStatement({
        sid: 'RecordRejects',
        actions: ['dynamodb:PutItem'],
        resources: [props.projectionsTable.tableArn],
        conditions: { 'ForAllValues:StringEquals': { 'dynamodb:LeadingKeys': [REJECT_KIND] } },
      }),
    );
    // A published event that pages a human completes its `page` work item (one Delete under
    // the store's `~work` kind). Without this grant the item stays queued and the sweeper sends
    // the page a second time.
    props.fanout.role.addToPrincipalPolicy(
      new iam.PolicyStatement({
        sid: 'CompletePages',
        actions: ['dynamodb:DeleteItem'],
        resources: [props.projectionsTable.tableArn],
        conditions: { 'ForAllValues:StringEquals': { 'dynamodb:LeadingKeys': [WORK_KIND] } },
      }),
    );
    props.bus.grantPutEventsTo(props.fanout.function);
    // The sweeper sends the pages the fan-out could not (their `page` work items are still
    // queued); stage steps it re-drives publish nothing.
    props.bus.grantPutEventsTo(props.sweeper.function);

    this.fanoutFailures = secureQueue(this, 'FanoutFailures', {
      queueName: `${props.prefix}-fanout-failed`,
      purpose: 'stream batches the fan-out could not publish; the message names the shard and sequence range',
    });
    this.streamMapping = new lambda.EventSourceMapping(this, 'EventsStream', {
      target: props.fanout.function,
      eventSourceArn: streamArn,
      startingPosition: lambda.StartingPosition.TRIM_HORIZON,
      batchSize: FANOUT_BATCH_SIZE,
      bisectBatchOnError: true,
      reportBatchItemFailures: true,
      retryAttempts: FANOUT_RETRY_ATTEMPTS,
      maxRecordAge: FANOUT_MAX_RECORD_AGE,
      parallelizationFactor: 1,
      onFailure: new SqsDlq(this.fanoutFailures),
      // Events are append-only: only inserts are committed events worth publishing.
      filters: [lambda.FilterCriteria.filter({ eventName: lambda.FilterRule.isEqual('INSERT') })],
    });

    const stageRules: Partial<Record<StageName, events.Rule>> = {};
    for (const route of STAGE_ROUTES) {
      const stage = props.stages[route.stage];
      if (!stage) {
        throw new Error(`the stage table routes ${route.detailType} to ${route.stage}, which is not among the stage functions`);
      }
      const rule = new events.Rule(this, `${route.detailType}Rule`, {
        ruleName: `${props.prefix}-${route.detailType}-to-${route.stage}`,
        description: `opx: ${route.detailType} wakes the ${route.stage} stage`,
        eventBus: props.bus,
        eventPattern: { source: [OPX_EVENT_SOURCE], detailType: [route.detailType] },
      });
      rule.addTarget(
        new targets.LambdaFunction(stage.function, {
          deadLetterQueue: requireQueue(stage),
          retryAttempts: STAGE_TARGET_RETRY_ATTEMPTS,
          maxEventAge: STAGE_TARGET_MAX_EVENT_AGE,
        }),
      );
      stageRules[route.stage] = rule;
    }
    this.stageRules = stageRules;

    this.sweepSchedule = new events.Rule(this, 'SweepSchedule', {
      ruleName: `${props.prefix}-sweep`,
      description: 'opx: re-drive work whose notification was lost',
      schedule: events.Schedule.rate(SWEEP_INTERVAL),
    });
    this.sweepSchedule.addTarget(
      new targets.LambdaFunction(props.sweeper.function, {
        deadLetterQueue: requireQueue(props.sweeper),
        retryAttempts: SWEEP_TARGET_RETRY_ATTEMPTS,
        maxEventAge: SWEEP_TARGET_MAX_EVENT_AGE,
      }),
    );
  }
}

/** The failure queue of an asynchronously invoked function, which also takes its rule targets' dead letters. */
export function requireQueue(fn: OpxFunction): sqs.Queue {
  if (fn.failureQueue === undefined) {
    throw new Error(`${fn.function.node.path} has no failure queue: give it asyncInvoke settings`);
  }
  return fn.failureQueue;
}
