import * as fs from 'node:fs';
import * as path from 'node:path';
import { Duration } from 'aws-cdk-lib';
import { RetentionDays } from 'aws-cdk-lib/aws-logs';
import type { RestoredTables } from './tables';

/** Every Lambda function opx deploys: package and binary name under `functions/`. */
export const FUNCTION_NAMES = [
  'signal-ingest',
  'fanout',
  'detection',
  'evidence',
  'confidence',
  'promotion',
  'sweeper',
  'replay',
  'incident-api',
] as const;

/** One of the function names above. */
export type FunctionName = (typeof FUNCTION_NAMES)[number];

/** The four API access levels; the keys of `OPX_ROLE_MAP`. */
export const ACCESS_LEVELS = ['reader', 'responder', 'approver', 'ingester'] as const;

/** One of the access levels above. */
export type AccessLevel = (typeof ACCESS_LEVELS)[number];

/** Role ARNs per access level (some levels may be absent). */
export type RoleArnsByLevel = Partial<Record<AccessLevel, string[]>>;

/** Upper bound on one function's reserved concurrency: a typo must not starve the account. */
export const RESERVED_CONCURRENCY_MAX = 200;

/** Most extra role ARNs: `OPX_ROLE_MAP` must fit, with every other variable, in Lambda's 4 KB environment. */
export const EXTRA_ROLE_ARNS_MAX = 40;

/**
 * How long one API request may run, for sizing the stage throttling: requests admitted at
 * `reservedConcurrency / API_REQUEST_SECONDS_BUDGET` per second (and a burst of
 * `reservedConcurrency`) never need more concurrent `incident-api` runs than are reserved, so
 * overload is refused by API Gateway as 429, not by Lambda as a throttle (a 5xx to the caller).
 */
export const API_REQUEST_SECONDS_BUDGET = 1;

/** The API stage's throttling for the `incident-api` function's reserved concurrency. */
export function apiStageThrottle(reservedConcurrency: number): { rateLimit: number; burstLimit: number } {
  return { rateLimit: reservedConcurrency / API_REQUEST_SECONDS_BUDGET, burstLimit: reservedConcurrency };
}

/** Lambda keeps this much of an account's concurrency unreserved; reservations must leave it. */
export const LAMBDA_UNRESERVED_CONCURRENCY_MIN = 100;

/** The sum of the reserved concurrency of every function. */
export function reservedConcurrencyTotal(reserved: Record<FunctionName, number>): number {
  return FUNCTION_NAMES.reduce((total, name) => total + reserved[name], 0);
}

/** Default reserved concurrency per function (bounded so a storm cannot exhaust the account). */
export const DEFAULT_RESERVED_CONCURRENCY: Record<FunctionName, number> = {
  // Ingest absorbs alarm storms; async invokes wait in Lambda's queue when throttled.
  'signal-ingest': 10,
  // One concurrent batch per stream shard (parallelization factor 1); 10 covers 10 shards.
  fanout: 10,
  detection: 5,
  evidence: 5,
  confidence: 5,
  promotion: 5,
  // Exactly one sweep at a time: overlapping sweeps would only race each other.
  sweeper: 1,
  // Verification is an operator action; two runs at once is plenty.
  replay: 2,
  'incident-api': 10,
};

/** Everything a platform team can set when deploying opx. */
export interface OpxConfig {
  /** Resource name prefix; tables are `<prefix>-events`, `<prefix>-idempotency`, `<prefix>-projections`. */
  readonly prefix: string;
  /** Directory holding `<function>/bootstrap` for each function (the cargo-lambda output). */
  readonly lambdaAssetDir: string;
  /** Existing SNS topic for opx's own alarms; when absent the stack creates `<prefix>-ops`. */
  readonly opsTopicArn?: string;
  /** Existing SNS topics carrying CloudWatch alarm notifications to subscribe `signal-ingest` to. */
  readonly existingAlarmTopicArns: string[];
  /** Existing IAM role ARNs to add to the API role map, per access level. */
  readonly extraRoleArns: RoleArnsByLevel;
  /** Minutes without any ingested signal before the "no signals" alarm fires. */
  readonly noSignalsPeriodMinutes: number;
  /** p99 end-to-end lag (alarm state change → incident) above which the lag alarm fires, in ms. */
  readonly endToEndLagP99ThresholdMs: number;
  /** Percentage of rejected signals (over 15 minutes) above which the rejected-rate alarm fires. */
  readonly rejectedSignalsPercentThreshold: number;
  /** Retention of every log group the stack creates, in days. */
  readonly logRetentionDays: number;
  /** Turn on X-Ray active tracing for every function. */
  readonly tracing: boolean;
  /** Create the account-level API Gateway CloudWatch role (needed once per account and region for access logs). */
  readonly apiGatewayAccountRole: boolean;
  /** WAF web ACL ARN to associate with the API stage (optional; IAM auth already refuses unsigned calls). */
  readonly webAclArn?: string;
  /** Reserved concurrency per function (overrides of the defaults). */
  readonly reservedConcurrency: Record<FunctionName, number>;
  /** Sweeper age threshold passed as `OPX_SWEEP_AGE_MS`. */
  readonly sweepAgeMs: number;
  /** Retention of the opx bus archive and of the CloudWatch alarm archive, in days. */
  readonly archiveRetentionDays: number;
  /** Use restored tables instead of the stack's own (point-in-time recovery runbook). */
  readonly restoredTables?: RestoredTables;
}

/** Default values, used when neither props nor context say otherwise. */
export const DEFAULT_CONFIG: OpxConfig = {
  prefix: 'opx',
  lambdaAssetDir: '../target/lambda',
  existingAlarmTopicArns: [],
  extraRoleArns: {},
  noSignalsPeriodMinutes: 60,
  endToEndLagP99ThresholdMs: 300_000,
  rejectedSignalsPercentThreshold: 10,
  logRetentionDays: 90,
  tracing: false,
  apiGatewayAccountRole: true,
  reservedConcurrency: DEFAULT_RESERVED_CONCURRENCY,
  sweepAgeMs: 300_000,
  archiveRetentionDays: 30,
};

/** Bounds of `noSignalsPeriodMinutes`: one alarm period, at least a sweep interval, at most a day. */
export const NO_SIGNALS_PERIOD_MINUTES_MIN = 5;
/** See `NO_SIGNALS_PERIOD_MINUTES_MIN`; CloudWatch periods above one day need multiple evaluation periods. */
export const NO_SIGNALS_PERIOD_MINUTES_MAX = 1440;

/** Sweeper schedule: how often work whose notification was lost is re-driven. */
export const SWEEP_INTERVAL = Duration.minutes(5);

/** Resource name prefix rule: lower-case, starts with a letter, short enough for every resource name. */
export const PREFIX_PATTERN = /^[a-z][a-z0-9-]{0,19}$/;

/** Throws, naming the field, when a configuration value is out of range. */
export function validateConfig(config: OpxConfig): void {
  if (!PREFIX_PATTERN.test(config.prefix)) {
    throw new Error(
      `prefix '${config.prefix}' is invalid: use 1-20 lower-case letters, digits or '-', starting with a letter (-c prefix=opx)`,
    );
  }
  if (
    !Number.isInteger(config.noSignalsPeriodMinutes) ||
    config.noSignalsPeriodMinutes < NO_SIGNALS_PERIOD_MINUTES_MIN ||
    config.noSignalsPeriodMinutes > NO_SIGNALS_PERIOD_MINUTES_MAX
  ) {
    throw new Error(
      `noSignalsPeriodMinutes ${config.noSignalsPeriodMinutes} is out of range: use a whole number from ${NO_SIGNALS_PERIOD_MINUTES_MIN} to ${NO_SIGNALS_PERIOD_MINUTES_MAX}`,
    );
  }
  const retentionDays = Object.values(RetentionDays).filter((value) => typeof value === 'number' && value > 0);
  if (!retentionDays.includes(config.logRetentionDays)) {
    throw new Error(
      `logRetentionDays ${config.logRetentionDays} is not a CloudWatch Logs retention: use one of ${retentionDays.join(', ')}`,
    );
  }
  const extraRoleCount = Object.values(config.extraRoleArns).flat().length;
  if (extraRoleCount > EXTRA_ROLE_ARNS_MAX) {
    throw new Error(
      `extraRoleArns lists ${extraRoleCount} roles, more than ${EXTRA_ROLE_ARNS_MAX}: OPX_ROLE_MAP must fit Lambda's 4 KB environment; use fewer roles (attach the access-level managed policies to shared roles)`,
    );
  }
  for (const name of FUNCTION_NAMES) {
    const value = config.reservedConcurrency[name];
    if (!Number.isInteger(value) || value < 1 || value > RESERVED_CONCURRENCY_MAX) {
      throw new Error(
        `reservedConcurrency.${name} ${value} is out of range: use a whole number from 1 to ${RESERVED_CONCURRENCY_MAX}`,
      );
    }
  }
  for (const level of Object.keys(config.extraRoleArns)) {
    if (!(ACCESS_LEVELS as readonly string[]).includes(level)) {
      throw new Error(`extraRoleArns has unknown access level '${level}': use one of ${ACCESS_LEVELS.join(', ')}`);
    }
  }
  for (const arn of Object.values(config.extraRoleArns).flat()) {
    if (!/^arn:aws[a-z-]*:iam::\d{12}:role\/.+/.test(arn)) {
      throw new Error(`extraRoleArns entry '${arn}' is not an IAM role ARN (arn:aws:iam::ACCOUNT:role/NAME)`);
    }
  }
  if (config.restoredTables) {
    const { tablePrefix, eventsStreamArn } = config.restoredTables;
    if (!PREFIX_PATTERN.test(tablePrefix ?? '')) {
      throw new Error(`restoredTables.tablePrefix '${tablePrefix}' is invalid: use the prefix of the restored tables, e.g. opx-r1`);
    }
    if (!/^arn:aws[a-z-]*:dynamodb:[a-z0-9-]+:\d{12}:table\/[^/]+\/stream\/.+/.test(eventsStreamArn ?? '')) {
      throw new Error(
        `restoredTables.eventsStreamArn '${eventsStreamArn}' is not a DynamoDB stream ARN: enable NEW_IMAGE on ${tablePrefix}-events and pass its LatestStreamArn`,
      );
    }
    if (!eventsStreamArn.includes(`:table/${tablePrefix}-events/stream/`)) {
      throw new Error(`restoredTables.eventsStreamArn must be the stream of ${tablePrefix}-events, not ${eventsStreamArn}`);
    }
  }
  for (const arn of config.existingAlarmTopicArns) {
    if (!/^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:.+/.test(arn)) {
      throw new Error(`existingAlarmTopicArns entry '${arn}' is not an SNS topic ARN`);
    }
  }
  for (const [field, value] of [
    ['endToEndLagP99ThresholdMs', config.endToEndLagP99ThresholdMs],
    ['rejectedSignalsPercentThreshold', config.rejectedSignalsPercentThreshold],
    ['logRetentionDays', config.logRetentionDays],
    ['sweepAgeMs', config.sweepAgeMs],
    ['archiveRetentionDays', config.archiveRetentionDays],
  ] as const) {
    if (!(typeof value === 'number' && Number.isFinite(value) && value > 0)) {
      throw new Error(`${field} ${value} is invalid: use a positive number`);
    }
  }
}

/**
 * Checks that every function's `bootstrap` exists under the asset directory, so a synth
 * before the Rust build fails with the command to run instead of a missing-path error.
 */
export function assertLambdaAssets(assetDir: string): void {
  const missing = FUNCTION_NAMES.filter((name) => !fs.existsSync(path.join(assetDir, name, 'bootstrap')));
  if (missing.length > 0) {
    throw new Error(
      `Lambda bootstrap missing for ${missing.join(', ')} under ${assetDir}: ` +
        'run `cargo lambda build --release` at the repository root first, ' +
        'or pass `-c lambdaAssetDir=test/fixtures/lambda` for an offline synth with placeholder binaries',
    );
  }
}

/** Reads a context value that may be given as JSON text on the command line (`-c key='[...]'`). */
export function parseContextJson<T>(key: string, raw: unknown, fallback: T): T {
  if (raw === undefined || raw === null || raw === '') {
    return fallback;
  }
  if (typeof raw !== 'string') {
    return raw as T;
  }
  try {
    return JSON.parse(raw) as T;
  } catch (error) {
    throw new Error(`context '${key}' is not valid JSON (${(error as Error).message}): pass e.g. -c ${key}='${JSON.stringify(fallback)}'`);
  }
}

/** Reads a numeric context value, accepting numbers and numeric strings. */
export function parseContextNumber(key: string, raw: unknown, fallback: number): number {
  if (raw === undefined || raw === null || raw === '') {
    return fallback;
  }
  const value = typeof raw === 'number' ? raw : Number(raw);
  if (!Number.isFinite(value)) {
    throw new Error(`context '${key}' is '${String(raw)}', not a number`);
  }
  return value;
}

/** Reads a boolean context value (`true`/`false`, as booleans or strings). */
export function parseContextBoolean(key: string, raw: unknown, fallback: boolean): boolean {
  if (raw === undefined || raw === null || raw === '') {
    return fallback;
  }
  if (raw === true || raw === 'true') {
    return true;
  }
  if (raw === false || raw === 'false') {
    return false;
  }
  throw new Error(`context '${key}' is '${String(raw)}': use true or false`);
}

/** Builds the configuration from CDK context (`cdk.json` or `-c key=value`), resolving paths against `infra/`. */
export function configFromContext(tryGetContext: (key: string) => unknown, infraDir: string): OpxConfig {
  const assetDirRaw = (tryGetContext('lambdaAssetDir') as string | undefined) ?? DEFAULT_CONFIG.lambdaAssetDir;
  const concurrencyOverrides = parseContextJson<Partial<Record<FunctionName, number>>>(
    'reservedConcurrency',
    tryGetContext('reservedConcurrency'),
    {},
  );
  for (const key of ['apiThrottleRateLimit', 'apiThrottleBurstLimit']) {
    if (tryGetContext(key) !== undefined) {
      throw new Error(
        `context '${key}' is gone: the API stage throttling follows the incident-api function's reserved concurrency; set -c reservedConcurrency='{"incident-api":N}' instead`,
      );
    }
  }
  const config: OpxConfig = {
    prefix: (tryGetContext('prefix') as string | undefined) ?? DEFAULT_CONFIG.prefix,
    lambdaAssetDir: path.resolve(infraDir, assetDirRaw),
    opsTopicArn: (tryGetContext('opsTopicArn') as string | undefined) || undefined,
    existingAlarmTopicArns: parseContextJson<string[]>('existingAlarmTopicArns', tryGetContext('existingAlarmTopicArns'), []),
    extraRoleArns: parseContextJson<RoleArnsByLevel>('extraRoleArns', tryGetContext('extraRoleArns'), {}),
    noSignalsPeriodMinutes: parseContextNumber('noSignalsPeriodMinutes', tryGetContext('noSignalsPeriodMinutes'), DEFAULT_CONFIG.noSignalsPeriodMinutes),
    endToEndLagP99ThresholdMs: parseContextNumber('endToEndLagP99ThresholdMs', tryGetContext('endToEndLagP99ThresholdMs'), DEFAULT_CONFIG.endToEndLagP99ThresholdMs),
    rejectedSignalsPercentThreshold: parseContextNumber('rejectedSignalsPercentThreshold', tryGetContext('rejectedSignalsPercentThreshold'), DEFAULT_CONFIG.rejectedSignalsPercentThreshold),
    logRetentionDays: parseContextNumber('logRetentionDays', tryGetContext('logRetentionDays'), DEFAULT_CONFIG.logRetentionDays),
    tracing: parseContextBoolean('tracing', tryGetContext('tracing'), DEFAULT_CONFIG.tracing),
    apiGatewayAccountRole: parseContextBoolean('apiGatewayAccountRole', tryGetContext('apiGatewayAccountRole'), DEFAULT_CONFIG.apiGatewayAccountRole),
    webAclArn: (tryGetContext('webAclArn') as string | undefined) || undefined,
    reservedConcurrency: { ...DEFAULT_RESERVED_CONCURRENCY, ...concurrencyOverrides },
    sweepAgeMs: parseContextNumber('sweepAgeMs', tryGetContext('sweepAgeMs'), DEFAULT_CONFIG.sweepAgeMs),
    archiveRetentionDays: parseContextNumber('archiveRetentionDays', tryGetContext('archiveRetentionDays'), DEFAULT_CONFIG.archiveRetentionDays),
    restoredTables: parseContextJson<RestoredTables | undefined>('restoredTables', tryGetContext('restoredTables'), undefined),
  };
  validateConfig(config);
  return config;
}
