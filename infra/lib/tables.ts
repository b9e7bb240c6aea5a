import { RemovalPolicy } from 'aws-cdk-lib';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import { Construct } from 'constructs';

/** Tables restored from point-in-time recovery (or otherwise created outside this stack). */
export interface RestoredTables {
  /** Their prefix: `<tablePrefix>-events`, `<tablePrefix>-idempotency`, `<tablePrefix>-projections`. */
  readonly tablePrefix: string;
  /** The stream ARN of `<tablePrefix>-events` (a restored table has a new stream, enabled after the restore). */
  readonly eventsStreamArn: string;
}

/** Props of {@link OpxTables}. */
export interface OpxTablesProps {
  /** Name prefix: tables are `<prefix>-events`, `<prefix>-idempotency`, `<prefix>-projections`. */
  readonly prefix: string;
  /** Use these existing tables instead of creating them (see the README's restore runbook). */
  readonly restored?: RestoredTables;
}

/**
 * The three DynamoDB tables of the DynamoDB store, with exactly the key schema the store
 * (and `opx init`) uses.
 *
 * Invariants: on-demand billing; point-in-time recovery; deletion protection and
 * `RemovalPolicy.RETAIN` (the event log is the audit record: neither `cdk destroy` nor a
 * replaced resource may delete it); encryption with the AWS-managed key `aws/dynamodb`;
 * no TTL anywhere (idempotency records are permanent: an expired record would let a
 * redelivered signal or command apply twice); a NEW_IMAGE stream on the events table only
 * (the fan-out reads it; nothing else is a stream reader).
 *
 * With `restored`, the tables are imported by name instead (after a point-in-time restore),
 * and the stack re-points the functions, their IAM grants and the fan-out's stream at them.
 */
export class OpxTables extends Construct {
  /** `<prefix>-events`: PK `stream_id` (S), SK `sequence` (N), stream NEW_IMAGE. */
  readonly events: dynamodb.ITable;
  /** `<prefix>-idempotency`: PK `key` (S); permanent records, never TTL. */
  readonly idempotency: dynamodb.ITable;
  /** `<prefix>-projections`: PK `kind` (S), SK `key` (S). */
  readonly projections: dynamodb.ITable;
  /** The prefix the functions get as `OPX_TABLE_PREFIX`. */
  readonly tablePrefix: string;

  constructor(scope: Construct, id: string, props: OpxTablesProps) {
    super(scope, id);
    if (props.restored) {
      // Restored tables are not created, changed or deleted by this stack; the tables this
      // stack created before stay (RETAIN and deletion protection) as the record up to the restore.
      const restored = props.restored;
      this.tablePrefix = restored.tablePrefix;
      this.events = dynamodb.Table.fromTableAttributes(this, 'Events', {
        tableName: `${restored.tablePrefix}-events`,
        tableStreamArn: restored.eventsStreamArn,
      });
      this.idempotency = dynamodb.Table.fromTableName(this, 'Idempotency', `${restored.tablePrefix}-idempotency`);
      this.projections = dynamodb.Table.fromTableName(this, 'Projections', `${restored.tablePrefix}-projections`);
      return;
    }
    this.tablePrefix = props.prefix;
    this.events = this.table('Events', `${props.prefix}-events`, {
      partitionKey: { name: 'stream_id', type: dynamodb.AttributeType.STRING },
      sortKey: { name: 'sequence', type: dynamodb.AttributeType.NUMBER },
      stream: dynamodb.StreamViewType.NEW_IMAGE,
    });
    this.idempotency = this.table('Idempotency', `${props.prefix}-idempotency`, {
      partitionKey: { name: 'key', type: dynamodb.AttributeType.STRING },
    });
    this.projections = this.table('Projections', `${props.prefix}-projections`, {
      partitionKey: { name: 'kind', type: dynamodb.AttributeType.STRING },
      sortKey: { name: 'key', type: dynamodb.AttributeType.STRING },
    });
  }

  /** All three tables, in a fixed order. */
  get all(): dynamodb.ITable[] {
    return [this.events, this.idempotency, this.projections];
  }

  private table(
    id: string,
    tableName: string,
    keys: Pick<dynamodb.TableProps, 'partitionKey' | 'sortKey' | 'stream'>,
  ): dynamodb.Table {
    return new dynamodb.Table(this, id, {
      tableName,
      ...keys,
      billingMode: dynamodb.BillingMode.PAY_PER_REQUEST,
      pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
      // Deletion protection and RETAIN, not RETAIN_ON_UPDATE_OR_DELETE: on a rolled-back create,
      // CloudFormation would try to delete the new table, deletion protection refuses, and the
      // stack is left in ROLLBACK_FAILED with the table kept anyway. So a rolled-back first
      // deploy keeps the three (empty) tables, and the retry needs them deleted first or a new
      // prefix (the README's "A failed first deploy" runbook). Every other named resource is
      // RETAIN_ON_UPDATE_OR_DELETE and leaves nothing behind.
      deletionProtection: true,
      removalPolicy: RemovalPolicy.RETAIN,
      // AWS-managed key: key use is logged in CloudTrail, there is no key policy to get wrong
      // and no key that can be disabled or scheduled for deletion out from under the audit
      // log, and functions need no KMS grants. A CMK buys key-level revocation, which opx
      // does not need; switch to TableEncryption.CUSTOMER_MANAGED here if policy demands it.
      encryption: dynamodb.TableEncryption.AWS_MANAGED,
    });
  }
}
