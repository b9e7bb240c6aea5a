import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, it } from 'node:test';
import { INFRA_DIR, cdkJsonContext } from './support';

const CDK_BIN = path.join(INFRA_DIR, 'node_modules', '.bin', 'cdk');
/** The CLI synth with CDK's built-in CloudFormation validation takes about 20 s here. */
const SYNTH_TIMEOUT_MS = 120_000;

const outdirs: string[] = [];
after(() => outdirs.forEach((dir) => fs.rmSync(dir, { recursive: true, force: true })));

/** `cdk synth` as a platform team runs it, with nothing that reaches the network. */
function cdkSynth(...args: string[]) {
  const outdir = fs.mkdtempSync(path.join(os.tmpdir(), 'opx-synth-'));
  outdirs.push(outdir);
  const result = spawnSync(CDK_BIN, ['synth', '--quiet', '-o', outdir, ...args], {
    cwd: INFRA_DIR,
    encoding: 'utf8',
    timeout: SYNTH_TIMEOUT_MS,
    env: {
      ...process.env,
      CDK_DISABLE_CLI_TELEMETRY: '1',
      CDK_DISABLE_VERSION_CHECK: '1',
      // No credentials and no region lookups: the synth must not need an AWS account.
      AWS_EC2_METADATA_DISABLED: 'true',
    },
  });
  return { ...result, outdir };
}

describe('cdk synth (offline)', () => {
  it('cdk.json turns notices and telemetry off', () => {
    const cdkJson = JSON.parse(fs.readFileSync(path.join(INFRA_DIR, 'cdk.json'), 'utf8'));
    assert.equal(cdkJson.notices, false);
    assert.equal(cdkJsonContext()['cli-telemetry'], false);
    assert.equal(cdkJson.app, 'npx tsx bin/app.ts');
  });

  it('succeeds with the placeholder assets, cdk-nag and CDK\'s CloudFormation validation on', () => {
    const result = cdkSynth('-c', 'lambdaAssetDir=test/fixtures/lambda');
    assert.equal(result.status, 0, `cdk synth failed:\n${result.stderr}\n${result.stdout}`);
    const template = JSON.parse(fs.readFileSync(path.join(result.outdir, 'opx.template.json'), 'utf8'));
    const types = Object.values(template.Resources as Record<string, { Type: string }>).map((r) => r.Type);
    assert.equal(types.filter((type) => type === 'AWS::Lambda::Function').length, 9);
    assert.equal(types.filter((type) => type === 'AWS::DynamoDB::Table').length, 3);
    const report = JSON.parse(fs.readFileSync(path.join(result.outdir, 'validation-report.json'), 'utf8'));
    for (const plugin of report.pluginReports ?? []) {
      assert.notEqual(plugin.conclusion, 'failure', `${plugin.pluginName} failed`);
    }
  });

  it('without a Rust build, fails and names the command to run first', () => {
    const result = cdkSynth('-c', 'lambdaAssetDir=test/fixtures/no-such-build');
    assert.notEqual(result.status, 0);
    assert.match(result.stderr + result.stdout, /cargo lambda build --release/);
  });
});
