import { ArnFormat, Duration, RemovalPolicy, Stack } from 'aws-cdk-lib';
import * as events from 'aws-cdk-lib/aws-events';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as subscriptions from 'aws-cdk-lib/aws-sns-subscriptions';
import { Construct } from 'constructs';
import { OpxFunction } from './function';
import { requireQueue } from './pipeline';
import { MessagingKey, secureTopic } from './topics';

/** EventBridge → signal-ingest: a signal not delivered is a signal lost, so retry for a day (the EventBridge maximum). */
export const ALARM_TARGET_RETRY_ATTEMPTS = 185;
/** See {@link ALARM_TARGET_RETRY_ATTEMPTS}. */
export const ALARM_TARGET_MAX_EVENT_AGE = Duration.hours(24);

/**
 * Names of opx's own alarms start with `<prefix>-self-`; the ingest rule drops them so that a
 * failing opx never feeds its own failure back into itself.
 */
export function selfAlarmPrefix(prefix: string): string {
  return `${prefix}-self-`;
}

/** Props of {@link SignalEntryPoints}. */
export interface SignalEntryPointsProps {
  /** Name prefix. */
  readonly prefix: string;
  /** The signal-ingest function. */
  readonly ingest: OpxFunction;
  /** The messaging key for the alarms topic. */
  readonly key: MessagingKey;
  /** Existing SNS topics with CloudWatch alarm notifications to subscribe. */
  readonly existingAlarmTopicArns: string[];
  /** How long the default bus keeps alarm state changes for replay, in days. */
  readonly archiveRetentionDays: number;
}

/**
 * How signals reach `signal-ingest` (besides the API's `POST /signals`):
 * 1. a rule on the account's default bus for every `CloudWatch Alarm State Change` (except
 *    opx's own alarms);
 * 2. the `<prefix>-alarms` SNS topic (point CloudWatch alarm actions at it), and any existing
 *    alarm topics listed in `existingAlarmTopicArns` (Alertmanager reaches `POST /signals`
 *    through a SigV4 signing relay instead: its SNS messages are not alarm notifications);
 * 3. CloudWatch alarm actions that invoke the function directly.
 * Every path has a dead-letter queue: the function's failure queue.
 */
export class SignalEntryPoints extends Construct {
  /** The default-bus rule for CloudWatch alarm state changes. */
  readonly alarmRule: events.Rule;
  /** The `<prefix>-alarms` topic. */
  readonly alarmsTopic: sns.Topic;
  /** The archive of alarm state changes on the default bus. */
  readonly alarmArchive: events.Archive;

  constructor(scope: Construct, id: string, props: SignalEntryPointsProps) {
    super(scope, id);
    const fn = props.ingest.function;
    const deadLetters = requireQueue(props.ingest);

    const alarmPattern: events.EventPattern = {
      source: ['aws.cloudwatch'],
      detailType: ['CloudWatch Alarm State Change'],
      detail: { alarmName: events.Match.anythingButPrefix(selfAlarmPrefix(props.prefix)) },
    };
    this.alarmRule = new events.Rule(this, 'AlarmStateChange', {
      ruleName: `${props.prefix}-cloudwatch-alarm-state-change`,
      description: 'opx: every CloudWatch alarm state change in this account and region becomes a signal',
      eventPattern: alarmPattern,
    });
    // The signals themselves, kept so that a window can be replayed into signal-ingest after
    // an outage or a point-in-time restore; ingest is idempotent, so a replay only adds what
    // is missing.
    this.alarmArchive = new events.Archive(this, 'AlarmArchive', {
      archiveName: `${props.prefix}-alarm-archive`,
      description: 'CloudWatch alarm state changes as opx ingests them, for replay',
      sourceEventBus: events.EventBus.fromEventBusName(this, 'DefaultBus', 'default'),
      eventPattern: alarmPattern,
      retention: Duration.days(props.archiveRetentionDays),
    });
    // The alarm archive is the only copy of signals from before a restore or an outage: kept
    // on stack deletion, not after a rolled-back first deploy (empty, and its name is fixed).
    this.alarmArchive.applyRemovalPolicy(RemovalPolicy.RETAIN_ON_UPDATE_OR_DELETE);
    this.alarmRule.addTarget(
      new targets.LambdaFunction(fn, {
        deadLetterQueue: deadLetters,
        retryAttempts: ALARM_TARGET_RETRY_ATTEMPTS,
        maxEventAge: ALARM_TARGET_MAX_EVENT_AGE,
      }),
    );

    this.alarmsTopic = secureTopic(this, 'AlarmsTopic', {
      topicName: `${props.prefix}-alarms`,
      displayName: 'opx alarm intake',
      key: props.key,
      allowCloudWatchAlarms: true,
    });
    const subscribe = (topic: sns.ITopic) =>
      topic.addSubscription(new subscriptions.LambdaSubscription(fn, { deadLetterQueue: deadLetters }));
    subscribe(this.alarmsTopic);
    props.existingAlarmTopicArns.forEach((arn, index) => {
      subscribe(sns.Topic.fromTopicArn(this, `ExistingAlarmTopic${index}`, arn));
    });

    // CloudWatch alarm actions may invoke the function directly (same account only).
    fn.addPermission('CloudWatchAlarmActions', {
      principal: new iam.ServicePrincipal('lambda.alarms.cloudwatch.amazonaws.com'),
      sourceAccount: Stack.of(this).account,
      sourceArn: Stack.of(this).formatArn({ service: 'cloudwatch', resource: 'alarm', resourceName: '*', arnFormat: ArnFormat.COLON_RESOURCE_NAME }),
    });
  }
}
