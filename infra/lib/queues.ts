import { Duration, RemovalPolicy, Validations } from 'aws-cdk-lib';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';

/** Dead-lettered work is kept for SQS's maximum, so a weekend outage can still be redriven. */
export const DEAD_LETTER_RETENTION = Duration.days(14);

/** Props of {@link secureQueue}. */
export interface SecureQueueProps {
  /** Queue name. */
  readonly queueName: string;
  /** What lands in this queue, for the nag acknowledgement and the runbook. */
  readonly purpose: string;
}

/**
 * A dead-letter queue: SQS-managed server-side encryption, TLS-only access, 14 days of
 * retention, kept on stack deletion (what it holds is work or pages that never happened; a
 * `cdk destroy` must not discard them) but not after a rolled-back first deploy (it is empty,
 * and its fixed name would make the retry fail).
 *
 * SSE-SQS rather than a KMS key: EventBridge, SNS and Lambda destinations can all deliver to
 * it without key-policy grants, and a KMS key in the failure path could itself make
 * deliveries fail.
 */
export function secureQueue(scope: Construct, id: string, props: SecureQueueProps): sqs.Queue {
  const queue = new sqs.Queue(scope, id, {
    queueName: props.queueName,
    encryption: sqs.QueueEncryption.SQS_MANAGED,
    enforceSSL: true,
    retentionPeriod: DEAD_LETTER_RETENTION,
    removalPolicy: RemovalPolicy.RETAIN_ON_UPDATE_OR_DELETE,
  });
  Validations.of(queue).acknowledge({
    id: 'AwsSolutions-SQS3',
    reason: `This queue is itself a dead-letter queue (${props.purpose}); giving it another DLQ would only move failed messages one step further from the redrive runbook.`,
  });
  return queue;
}
