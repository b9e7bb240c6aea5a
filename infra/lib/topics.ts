import { RemovalPolicy, Stack } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as sns from 'aws-cdk-lib/aws-sns';
import { Construct } from 'constructs';

/** AWS services that publish to opx's encrypted topics. */
export type TopicPublisher = 'cloudwatch.amazonaws.com' | 'events.amazonaws.com';

/**
 * The customer-managed key that encrypts opx's SNS topics.
 *
 * A CMK because the AWS-managed `aws/sns` key cannot be used by EventBridge (paging) or
 * CloudWatch alarm actions (the ops and alarms topics): its key policy cannot grant them.
 * The key policy grants each of those services only `kms:Decrypt` and `kms:GenerateDataKey*`,
 * and only for the topics it publishes to (`kms:EncryptionContext:aws:sns:topicArn`, the
 * context SNS sets on every data key). Not `aws:SourceAccount`, `aws:SourceArn` or
 * `aws:SourceOrgID`: AWS does not support them in a key policy for EventBridge publishing to an
 * encrypted topic, so every page would be refused by KMS. Who may publish is limited by each
 * topic's own policy (`aws:SourceArn` of the rule, `aws:SourceAccount` for CloudWatch).
 */
export class MessagingKey extends Construct {
  /** The key. */
  readonly key: kms.Key;

  constructor(scope: Construct, id: string, props: { readonly prefix: string }) {
    super(scope, id);
    this.key = new kms.Key(this, 'Key', {
      alias: `alias/${props.prefix}-messaging`,
      description: `Encrypts the ${props.prefix} SNS topics (alarms, paging, ops)`,
      enableKeyRotation: true,
      // Kept on stack deletion: deleting it would make every retained message unreadable. A
      // rolled-back first deploy schedules it for deletion (it encrypted nothing yet), so the
      // retry does not leave a stray key.
      removalPolicy: RemovalPolicy.RETAIN_ON_UPDATE_OR_DELETE,
    });
  }

  /**
   * Lets `service` use the key for the topic named `topicName` only. The ARN is built from
   * the name, not referenced: the topic refers to the key, so a reference back would be a cycle.
   */
  allowPublisher(service: TopicPublisher, topicName: string): void {
    const topicArn = Stack.of(this).formatArn({ service: 'sns', resource: topicName });
    this.key.addToResourcePolicy(
      new iam.PolicyStatement({
        sid: `Publish${service.split('.')[0]}${topicName.replace(/[^A-Za-z0-9]/g, '')}`,
        principals: [new iam.ServicePrincipal(service)],
        // The form AWS documents for services publishing to an encrypted topic: data-key
        // generation and decryption only, never key management or re-encryption.
        actions: ['kms:Decrypt', 'kms:GenerateDataKey*'],
        resources: ['*'],
        conditions: { StringEquals: { 'kms:EncryptionContext:aws:sns:topicArn': topicArn } },
      }),
    );
  }
}

/** Props of {@link secureTopic}. */
export interface SecureTopicProps {
  /** Topic name. */
  readonly topicName: string;
  /** Display name (the SMS/e-mail sender name). */
  readonly displayName: string;
  /** The messaging key. */
  readonly key: MessagingKey;
  /** Let CloudWatch alarms in this account publish to it. */
  readonly allowCloudWatchAlarms: boolean;
  /** Let EventBridge use the key for it (the topic policy grant is the rule target's, see `EncryptedTopicTarget`). */
  readonly allowEventBridge?: boolean;
}

/** An SNS topic encrypted with the messaging key that accepts only TLS publishes. */
export function secureTopic(scope: Construct, id: string, props: SecureTopicProps): sns.Topic {
  const topic = new sns.Topic(scope, id, {
    topicName: props.topicName,
    displayName: props.displayName,
    masterKey: props.key.key,
    enforceSSL: true,
  });
  if (props.allowEventBridge) {
    props.key.allowPublisher('events.amazonaws.com', props.topicName);
  }
  if (props.allowCloudWatchAlarms) {
    props.key.allowPublisher('cloudwatch.amazonaws.com', props.topicName);
    // The topic policy written by enforceSSL replaces SNS's default policy, so CloudWatch
    // (a service principal, not an IAM identity in this account) must be allowed explicitly.
    topic.addToResourcePolicy(
      new iam.PolicyStatement({
        sid: 'CloudWatchAlarmsPublish',
        principals: [new iam.ServicePrincipal('cloudwatch.amazonaws.com')],
        actions: ['sns:Publish'],
        resources: [topic.topicArn],
        conditions: { StringEquals: { 'aws:SourceAccount': Stack.of(scope).account } },
      }),
    );
  }
  return topic;
}
