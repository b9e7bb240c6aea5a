import { Duration } from 'aws-cdk-lib';
import * as events from 'aws-cdk-lib/aws-events';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { OPX_EVENT_SOURCE } from './pipeline';
import { secureQueue } from './queues';
import { PAGING_EVENT_TYPES } from './stages';
import { MessagingKey, secureTopic } from './topics';

/** The committed event types that page a human (the generated stage table's page stage). */
export const PAGING_DETAIL_TYPES = PAGING_EVENT_TYPES;

/** A page that cannot be delivered within 30 minutes is dead-lettered (and its DLQ alarm fires). */
export const PAGING_TARGET_MAX_EVENT_AGE = Duration.minutes(30);
/** See {@link PAGING_TARGET_MAX_EVENT_AGE}. */
export const PAGING_TARGET_RETRY_ATTEMPTS = 20;

/** Props of {@link Paging}. */
export interface PagingProps {
  /** Name prefix. */
  readonly prefix: string;
  /** The opx bus. */
  readonly bus: events.IEventBus;
  /** The messaging key. */
  readonly key: MessagingKey;
}

/**
 * The `<prefix>-paging` SNS topic, for the team to subscribe its pager to: incident opened and
 * severity changed events, as a short human-readable message (the event pointer: stream,
 * sequence and time, never decision data).
 */
export class Paging extends Construct {
  /** The topic. */
  readonly topic: sns.Topic;
  /** The rule on the opx bus. */
  readonly rule: events.Rule;
  /** Pages EventBridge could not deliver. */
  readonly deadLetters: sqs.Queue;

  constructor(scope: Construct, id: string, props: PagingProps) {
    super(scope, id);
    this.topic = secureTopic(this, 'Topic', {
      topicName: `${props.prefix}-paging`,
      displayName: 'opx paging',
      key: props.key,
      allowCloudWatchAlarms: false,
      allowEventBridge: true,
    });
    this.deadLetters = secureQueue(this, 'DeadLetters', {
      queueName: `${props.prefix}-paging-failed`,
      purpose: 'pages EventBridge could not publish to the paging topic',
    });
    this.rule = new events.Rule(this, 'Rule', {
      ruleName: `${props.prefix}-paging`,
      description: 'opx: incident opened or severity changed → paging topic',
      eventBus: props.bus,
      eventPattern: { source: [OPX_EVENT_SOURCE], detailType: [...PAGING_DETAIL_TYPES] },
    });
    const field = events.EventField.fromPath;
    this.rule.addTarget(
      new EncryptedTopicTarget(this.topic, {
        // Scalar fields only: a JSON object (the summary) substituted into a text template
        // would not be a readable page. The summary's keys belong to the functions. A page
        // is delivered at least once (the sweeper re-sends one the fan-out could not
        // publish); the page id (the event's hash) lets the pager deduplicate.
        message: events.RuleTargetInput.fromText(
          `opx ${field('$.detail-type')}: ${field('$.detail.stream_id')} (event ${field('$.detail.sequence')} at ${field('$.time')}). Look it up with opx show or GET /incidents/{id}. Page id ${field('$.detail.message_id')}: the same on a re-sent page.`,
        ),
        deadLetterQueue: this.deadLetters,
        retryAttempts: PAGING_TARGET_RETRY_ATTEMPTS,
        maxEventAge: PAGING_TARGET_MAX_EVENT_AGE,
      }),
    );
  }
}

/**
 * An SNS target for an encrypted topic that grants EventBridge only what this rule needs.
 *
 * CDK's `SnsTopic` target would allow `events.amazonaws.com` to publish with no condition (any
 * account's rule could then page this team) and add an unconditioned key grant. Here the topic
 * policy allows publishing only from this rule (`aws:SourceArn`), and the key policy lets
 * EventBridge use the key for this topic only (`MessagingKey.allowPublisher`, via `secureTopic`).
 */
export class EncryptedTopicTarget implements events.IRuleTarget {
  constructor(
    private readonly topic: sns.ITopic,
    private readonly props: targets.SnsTopicProps,
  ) {}

  bind(rule: events.IRule): events.RuleTargetConfig {
    this.topic.addToResourcePolicy(
      new iam.PolicyStatement({
        sid: `EventBridgePublish${rule.node.addr.slice(0, 8)}`,
        principals: [new iam.ServicePrincipal('events.amazonaws.com')],
        actions: ['sns:Publish'],
        resources: [this.topic.topicArn],
        conditions: { ArnEquals: { 'aws:SourceArn': rule.ruleArn } },
      }),
    );
    if (this.props.deadLetterQueue) {
      targets.addToDeadLetterQueueResourcePolicy(rule, this.props.deadLetterQueue);
    }
    return {
      ...targets.bindBaseTargetConfig(this.props),
      arn: this.topic.topicArn,
      input: this.props.message,
      targetResource: this.topic,
    };
  }
}
