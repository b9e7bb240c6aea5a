import * as path from 'node:path';
import { Duration, RemovalPolicy, Validations } from 'aws-cdk-lib';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as destinations from 'aws-cdk-lib/aws-lambda-destinations';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { FunctionName } from './config';
import { secureQueue } from './queues';

/** The three tables of the DynamoDB store. */
export type StoreTable = 'events' | 'idempotency' | 'projections';

/**
 * The DynamoDB calls the store (`crates/opx-store-dynamodb`) makes on each table, as IAM
 * actions. Reads: `Query` on events (a stream, its head) and projections (a kind), `GetItem` on
 * idempotency and projections, `Scan` on idempotency (replay lists the records).
 */
export const TABLE_READ_ACTIONS: Record<StoreTable, readonly string[]> = {
  events: ['dynamodb:Query'],
  idempotency: ['dynamodb:GetItem', 'dynamodb:Scan'],
  projections: ['dynamodb:GetItem', 'dynamodb:Query'],
};

/**
 * Writes: every commit is one `TransactWriteItems`, which IAM authorises per member as the
 * single-item action. Events and idempotency records are append-only — a Put with
 * `attribute_not_exists`, and a ConditionCheck on an event for the chain and for work
 * pointers — so those tables get no update, delete or batch write. Projections take Puts
 * (projections, the `~stream` registry, rejects via `PutItem`), Updates (work added with
 * `if_not_exists`) and Deletes (projection deletes, work done).
 */
export const TABLE_WRITE_ACTIONS: Record<StoreTable, readonly string[]> = {
  events: ['dynamodb:ConditionCheckItem', 'dynamodb:PutItem'],
  idempotency: ['dynamodb:PutItem'],
  projections: ['dynamodb:DeleteItem', 'dynamodb:PutItem', 'dynamodb:UpdateItem'],
};

/** The store's tables, by role. */
export type StoreTables = Record<StoreTable, dynamodb.ITable>;

/** How a function may use the opx tables. */
export type TableAccess = 'none' | 'read' | 'read-write';

/** Async invocation settings for functions invoked by EventBridge, SNS or CloudWatch. */
export interface AsyncInvokeSettings {
  /** Lambda's own retries after a function error. */
  readonly retryAttempts: number;
  /** How long Lambda keeps an event it could not run (throttled or failing). */
  readonly maxEventAge: Duration;
}

/** Props of {@link OpxFunction}. */
export interface OpxFunctionProps {
  /** Resource name prefix (`<prefix>-<name>` is the function name). */
  readonly prefix: string;
  /** The tables' prefix, passed as `OPX_TABLE_PREFIX` (the resource prefix unless tables were restored). */
  readonly tablePrefix: string;
  /** The function's package and binary name under `functions/`. */
  readonly name: FunctionName;
  /** What the function does, for the console. */
  readonly description: string;
  /** Directory holding `<name>/bootstrap`. */
  readonly assetDir: string;
  /** The store's tables. */
  readonly tables: StoreTables;
  /** `read` or `read-write` on the tables, with the actions of {@link TABLE_READ_ACTIONS} and {@link TABLE_WRITE_ACTIONS}. */
  readonly tableAccess: TableAccess;
  /** Environment beyond `OPX_TABLE_PREFIX` and `RUST_LOG`. */
  readonly environment?: Record<string, string>;
  /** Reserved (maximum) concurrency. */
  readonly reservedConcurrency: number;
  /** Timeout. */
  readonly timeout: Duration;
  /** Memory in MB. */
  readonly memorySize?: number;
  /** Log retention. */
  readonly logRetention: logs.RetentionDays;
  /** X-Ray active tracing. */
  readonly tracing: boolean;
  /** Set for functions invoked asynchronously: gives them an on-failure queue. */
  readonly asyncInvoke?: AsyncInvokeSettings;
}

/** Default memory: the Rust binaries are small; 256 MB also buys proportionally more CPU than 128 MB. */
export const FUNCTION_MEMORY_MB_DEFAULT = 256;

/**
 * One opx Lambda function: the cargo-lambda `bootstrap` on `provided.al2023`, x86_64, with its
 * own role, its own log group (explicit retention), bounded concurrency and, when invoked
 * asynchronously, an encrypted on-failure queue.
 *
 * Invariant: the role holds only what this function needs. Log permissions are written out
 * for this function's log group (no `AWSLambdaBasicExecutionRole`, which allows writing any
 * log group); table access is granted per table ARN with enumerated actions, never a
 * wildcard action.
 */
export class OpxFunction extends Construct {
  /** The function's package and binary name. */
  readonly name: FunctionName;
  /** The function. */
  readonly function: lambda.Function;
  /** Its execution role. */
  readonly role: iam.Role;
  /** Its log group, `/aws/lambda/<prefix>-<name>`. */
  readonly logGroup: logs.LogGroup;
  /**
   * When invoked asynchronously: the one dead-letter queue of everything meant for this
   * function (Lambda on-failure destination, EventBridge target DLQ, SNS subscription DLQ).
   */
  readonly failureQueue?: sqs.Queue;

  constructor(scope: Construct, id: string, props: OpxFunctionProps) {
    super(scope, id);
    this.name = props.name;
    const functionName = `${props.prefix}-${props.name}`;

    this.logGroup = new logs.LogGroup(this, 'Logs', {
      logGroupName: `/aws/lambda/${functionName}`,
      retention: props.logRetention,
      // Logs hold the structured decision trail and EMF metrics; keep them past a stack delete.
      // Not past a rolled-back first deploy: the name is fixed, and a kept (empty) group would
      // make the retry fail with "already exists".
      removalPolicy: RemovalPolicy.RETAIN_ON_UPDATE_OR_DELETE,
    });

    this.role = new iam.Role(this, 'Role', {
      assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
      description: `Execution role of ${functionName}: its log group and its tables only`,
    });
    this.role.addToPrincipalPolicy(
      new iam.PolicyStatement({
        sid: 'WriteOwnLogGroup',
        actions: ['logs:CreateLogStream', 'logs:PutLogEvents'],
        resources: [this.logGroup.logGroupArn],
      }),
    );

    if (props.tableAccess !== 'none') {
      for (const table of Object.keys(TABLE_READ_ACTIONS) as StoreTable[]) {
        const actions = [...TABLE_READ_ACTIONS[table], ...(props.tableAccess === 'read-write' ? TABLE_WRITE_ACTIONS[table] : [])];
        this.role.addToPrincipalPolicy(
          new iam.PolicyStatement({
            sid: `${props.tableAccess === 'read-write' ? 'ReadWrite' : 'Read'}${table.charAt(0).toUpperCase()}${table.slice(1)}Table`,
            actions: [...new Set(actions)].sort(),
            resources: [props.tables[table].tableArn],
          }),
        );
      }
    }

    this.function = new lambda.Function(this, 'Function', {
      functionName,
      description: props.description,
      runtime: lambda.Runtime.PROVIDED_AL2023,
      architecture: lambda.Architecture.X86_64,
      handler: 'bootstrap',
      code: lambda.Code.fromAsset(path.join(props.assetDir, props.name)),
      role: this.role,
      logGroup: this.logGroup,
      memorySize: props.memorySize ?? FUNCTION_MEMORY_MB_DEFAULT,
      timeout: props.timeout,
      reservedConcurrentExecutions: props.reservedConcurrency,
      tracing: props.tracing ? lambda.Tracing.ACTIVE : lambda.Tracing.DISABLED,
      environment: {
        OPX_TABLE_PREFIX: props.tablePrefix,
        RUST_LOG: 'info',
        ...props.environment,
      },
    });
    if (props.tracing) {
      Validations.of(this.role).acknowledge({
        id: 'AwsSolutions-IAM5[Resource::*]',
        reason: 'X-Ray PutTraceSegments and PutTelemetryRecords support no resource-level permissions; tracing is opt-in (-c tracing=true).',
      });
    }

    if (props.asyncInvoke) {
      this.failureQueue = secureQueue(this, 'FailedInvocations', {
        queueName: `${functionName}-failed`,
        purpose: `events that could not be delivered to or run by ${functionName}: its rule targets' and SNS subscriptions' dead letters and its failed asynchronous invocations`,
      });
      this.function.configureAsyncInvoke({
        onFailure: new destinations.SqsDestination(this.failureQueue),
        retryAttempts: props.asyncInvoke.retryAttempts,
        maxEventAge: props.asyncInvoke.maxEventAge,
      });
    }
  }
}
