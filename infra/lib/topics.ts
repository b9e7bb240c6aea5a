import { RemovalPolicy, Stack } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as sns from 'aws-cdk-lib/aws-sns';
import { Construct } from 'constructs';

/**
 * The customer-managed key that encrypts opx's SNS topics.
 *
 * A CMK because the AWS-managed `aws/sns` key cannot be used by EventBridge (paging) or
 * CloudWatch alarm actions (the ops and alarms topics): its key policy cannot grant them.
 * The key policy grants those two services only `kms:Decrypt` and `kms:GenerateDataKey*`,
 * limited to this account (`aws:SourceAccount`).
 */
export class MessagingKey extends Construct {
  /** The key. */
  readonly key: kms.Key;

  constructor(scope: Construct, id: string, props: { readonly prefix: string }) {
    super(scope, id);
    const account = Stack.of(this).account;
    this.key = new kms.Key(this, 'Key', {
      alias: `alias/${props.prefix}-messaging`,
      description: `Encrypts the ${props.prefix} SNS topics (alarms, paging, ops)`,
      enableKeyRotation: true,
      // Deleting the key would make every retained message unreadable; keep it.
      removalPolicy: RemovalPolicy.RETAIN,
    });
    for (const service of ['events.amazonaws.com', 'cloudwatch.amazonaws.com']) {
      this.key.addToResourcePolicy(
        new iam.PolicyStatement({
          sid: `Publish${service.split('.')[0]}`,
          principals: [new iam.ServicePrincipal(service)],
          // The form AWS documents for services publishing to an encrypted topic: data-key
          // generation and decryption only, never key management or re-encryption.
          actions: ['kms:Decrypt', 'kms:GenerateDataKey*'],
          resources: ['*'],
          conditions: { StringEquals: { 'aws:SourceAccount': account } },
        }),
      );
    }
  }
}

/** Props of {@link secureTopic}. */
export interface SecureTopicProps {
  /** Topic name. */
  readonly topicName: string;
  /** Display name (the SMS/e-mail sender name). */
  readonly displayName: string;
  /** The messaging key. */
  readonly key: kms.IKey;
  /** Let CloudWatch alarms in this account publish to it. */
  readonly allowCloudWatchAlarms: boolean;
}

/** An SNS topic encrypted with the messaging key that accepts only TLS publishes. */
export function secureTopic(scope: Construct, id: string, props: SecureTopicProps): sns.Topic {
  const topic = new sns.Topic(scope, id, {
    topicName: props.topicName,
    displayName: props.displayName,
    masterKey: props.key,
    enforceSSL: true,
  });
  if (props.allowCloudWatchAlarms) {
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
