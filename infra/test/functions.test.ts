import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { DEFAULT_RESERVED_CONCURRENCY, FUNCTION_NAMES, RESERVED_CONCURRENCY_MAX, assertLambdaAssets } from '../lib/config';
import { Built, CfnResource, FIXTURE_ASSET_DIR, buildStack, logicalId, references, resourcesOfType } from './support';

const built = buildStack();
const functions = Object.fromEntries(
  resourcesOfType(built.json, 'AWS::Lambda::Function').map(([id, fn]) => [fn.Properties?.FunctionName as string, { id, fn }]),
);

function functionId(b: Built, name: string): string {
  const found = resourcesOfType(b.json, 'AWS::Lambda::Function').find(([, fn]) => fn.Properties?.FunctionName === name);
  assert.ok(found, `function ${name} exists`);
  return found[0];
}

describe('Lambda functions', () => {
  it('are the nine functions of the workspace, named <prefix>-<package>', () => {
    assert.deepEqual(Object.keys(functions).sort(), FUNCTION_NAMES.map((name) => `opx-${name}`).sort());
  });

  it('run the cargo-lambda bootstrap on provided.al2023, x86_64', () => {
    for (const [name, { fn }] of Object.entries(functions)) {
      assert.equal(fn.Properties!.Runtime, 'provided.al2023', `${name} runtime`);
      assert.deepEqual(fn.Properties!.Architectures, ['x86_64'], `${name} architecture`);
      assert.equal(fn.Properties!.Handler, 'bootstrap', `${name} handler`);
    }
  });

  it('never declare arm64 anywhere (the aarch64 toolchain cannot be built here)', () => {
    assert.ok(!JSON.stringify(built.json).includes('arm64'));
  });

  it('take their code from <lambdaAssetDir>/<name>', () => {
    for (const name of FUNCTION_NAMES) {
      const metadata = functions[`opx-${name}`].fn.Metadata?.['aws:asset:path'];
      assert.ok(metadata, `${name} has an asset`);
      const staged = path.join(built.app.outdir, String(metadata), 'bootstrap');
      assert.equal(
        fs.readFileSync(staged, 'utf8'),
        fs.readFileSync(path.join(FIXTURE_ASSET_DIR, name, 'bootstrap'), 'utf8'),
        `${name} bundles ${name}/bootstrap`,
      );
    }
  });

  it('have bounded reserved concurrency', () => {
    for (const name of FUNCTION_NAMES) {
      const { fn } = functions[`opx-${name}`];
      const reserved = fn.Properties!.ReservedConcurrentExecutions;
      assert.equal(reserved, DEFAULT_RESERVED_CONCURRENCY[name], `${name} reserved concurrency`);
      assert.ok(reserved >= 1 && reserved <= RESERVED_CONCURRENCY_MAX);
    }
    assert.equal(functions['opx-sweeper'].fn.Properties!.ReservedConcurrentExecutions, 1, 'one sweep at a time');
  });

  it('accept reserved concurrency overrides and refuse out-of-range ones', () => {
    const custom = buildStack({ reservedConcurrency: '{"signal-ingest": 50}' });
    const ingest = resourcesOfType(custom.json, 'AWS::Lambda::Function').find(
      ([, fn]) => fn.Properties?.FunctionName === 'opx-signal-ingest',
    )!;
    assert.equal(ingest[1].Properties!.ReservedConcurrentExecutions, 50);
    assert.throws(() => buildStack({ reservedConcurrency: '{"fanout": 0}' }), /reservedConcurrency\.fanout 0 is out of range/);
    assert.throws(() => buildStack({ reservedConcurrency: '{"fanout": 100000}' }), /reservedConcurrency\.fanout/);
  });

  it('get OPX_TABLE_PREFIX and RUST_LOG, and the variables each one needs', () => {
    for (const [name, { fn }] of Object.entries(functions)) {
      const variables = fn.Properties!.Environment.Variables;
      assert.equal(variables.OPX_TABLE_PREFIX, 'opx', `${name} OPX_TABLE_PREFIX`);
      assert.ok(variables.RUST_LOG, `${name} RUST_LOG`);
    }
    const busId = logicalId(built, built.stack.bus);
    assert.deepEqual(functions['opx-fanout'].fn.Properties!.Environment.Variables.OPX_BUS_NAME, { Ref: busId });
    assert.equal(functions['opx-sweeper'].fn.Properties!.Environment.Variables.OPX_SWEEP_AGE_MS, '300000');
    assert.deepEqual(functions['opx-sweeper'].fn.Properties!.Environment.Variables.OPX_BUS_NAME, { Ref: busId }, 'the sweeper sends pages fanout could not');
    const roleMap = functions['opx-incident-api'].fn.Properties!.Environment.Variables.OPX_ROLE_MAP;
    for (const level of ['reader', 'responder', 'approver', 'ingester'] as const) {
      assert.ok(references(roleMap, logicalId(built, built.stack.api.roles[level])), `OPX_ROLE_MAP names the ${level} role`);
    }
  });

  it('log to their own log group, with a retention', () => {
    for (const [name, { fn }] of Object.entries(functions)) {
      const logGroupRef = fn.Properties!.LoggingConfig.LogGroup;
      const logGroup = built.json.Resources[logGroupRef.Ref];
      assert.equal(logGroup.Type, 'AWS::Logs::LogGroup', `${name} log group`);
      assert.equal(logGroup.Properties!.LogGroupName, `/aws/lambda/${name}`);
      assert.equal(logGroup.Properties!.RetentionInDays, 90);
    }
    for (const [id, logGroup] of resourcesOfType(built.json, 'AWS::Logs::LogGroup')) {
      assert.ok(logGroup.Properties!.RetentionInDays, `${id} has a retention`);
    }
  });

  it('have no X-Ray unless asked, and active tracing when asked', () => {
    for (const { fn } of Object.values(functions)) {
      assert.equal(fn.Properties!.TracingConfig?.Mode ?? 'PassThrough', 'PassThrough');
    }
    const traced = buildStack({ tracing: 'true' });
    for (const [, fn] of resourcesOfType(traced.json, 'AWS::Lambda::Function')) {
      assert.equal(fn.Properties!.TracingConfig.Mode, 'Active');
    }
  });
});

describe('asynchronous invocations', () => {
  // Every function that a service invokes asynchronously (EventBridge, SNS, CloudWatch alarm
  // actions) must land its failures somewhere: an on-failure destination with bounded retries.
  const asyncPrincipals = ['events.amazonaws.com', 'sns.amazonaws.com', 'lambda.alarms.cloudwatch.amazonaws.com'];
  const asyncTargets = new Set(
    resourcesOfType(built.json, 'AWS::Lambda::Permission')
      .filter(([, permission]) => asyncPrincipals.includes(permission.Properties!.Principal))
      .map(([, permission]) => permission.Properties!.FunctionName['Fn::GetAtt'][0] as string),
  );
  const invokeConfigs = resourcesOfType(built.json, 'AWS::Lambda::EventInvokeConfig');

  it('are the ingest, stage and sweeper functions', () => {
    const expected = ['signal-ingest', 'detection', 'evidence', 'confidence', 'promotion', 'sweeper'].map((name) =>
      functionId(built, `opx-${name}`),
    );
    assert.deepEqual([...asyncTargets].sort(), expected.sort());
  });

  it('each have an SQS on-failure destination, bounded retries and a bounded event age', () => {
    for (const target of asyncTargets) {
      const config = invokeConfigs.find(([, c]) => references(c.Properties!.FunctionName, target));
      assert.ok(config, `${target} has an EventInvokeConfig`);
      const props = config[1].Properties!;
      const destination = props.DestinationConfig?.OnFailure?.Destination;
      assert.ok(destination, `${target} has an on-failure destination`);
      const queueId = destination['Fn::GetAtt'][0];
      assert.equal(built.json.Resources[queueId].Type, 'AWS::SQS::Queue', `${target} fails into a queue`);
      assert.ok(props.MaximumRetryAttempts >= 0 && props.MaximumRetryAttempts <= 2, `${target} retries are bounded`);
      assert.ok(props.MaximumEventAgeInSeconds <= 6 * 3600, `${target} event age is bounded`);
    }
  });
});

describe('the fan-out event source mapping', () => {
  const mappings = resourcesOfType(built.json, 'AWS::Lambda::EventSourceMapping');

  it('is the only stream reader, on the events table stream', () => {
    assert.equal(mappings.length, 1);
    const props = mappings[0][1].Properties!;
    const eventsTable = logicalId(built, built.stack.tables.events);
    assert.deepEqual(props.EventSourceArn, { 'Fn::GetAtt': [eventsTable, 'StreamArn'] });
    assert.ok(references(props.FunctionName, functionId(built, 'opx-fanout')));
  });

  it('batches, bisects on error, reports partial failures and bounds retries and age', () => {
    const props = mappings[0][1].Properties!;
    assert.equal(props.BatchSize, 100);
    assert.equal(props.BisectBatchOnFunctionError, true);
    assert.deepEqual(props.FunctionResponseTypes, ['ReportBatchItemFailures']);
    assert.equal(props.MaximumRetryAttempts, 10);
    assert.equal(props.MaximumRecordAgeInSeconds, 6 * 3600);
    assert.equal(props.StartingPosition, 'TRIM_HORIZON');
    assert.deepEqual(props.FilterCriteria, { Filters: [{ Pattern: '{"eventName":["INSERT"]}' }] });
  });

  it('sends batches it cannot publish to an encrypted SQS queue', () => {
    const destination = mappings[0][1].Properties!.DestinationConfig.OnFailure.Destination;
    const queue: CfnResource = built.json.Resources[destination['Fn::GetAtt'][0]];
    assert.equal(queue.Type, 'AWS::SQS::Queue');
    assert.equal(queue.Properties!.QueueName, 'opx-fanout-failed');
    assert.equal(queue.Properties!.SqsManagedSseEnabled, true);
  });
});

describe('the asset directory', () => {
  it('must hold every bootstrap, and the error says which command builds them', () => {
    const empty = fs.mkdtempSync(path.join(os.tmpdir(), 'opx-assets-'));
    assert.throws(() => assertLambdaAssets(empty), /cargo lambda build --release/);
    fs.mkdirSync(path.join(empty, 'fanout'));
    fs.writeFileSync(path.join(empty, 'fanout', 'bootstrap'), '');
    assert.throws(() => assertLambdaAssets(empty), (error: Error) => !error.message.includes('missing for signal-ingest, fanout'));
    assert.doesNotThrow(() => assertLambdaAssets(FIXTURE_ASSET_DIR));
    assert.throws(() => buildStack({ lambdaAssetDir: empty }), /Lambda bootstrap missing for signal-ingest, detection/);
    fs.rmSync(empty, { recursive: true });
  });
});
