import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, it } from 'node:test';
import { App, Stack, Validations } from 'aws-cdk-lib';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { AwsSolutionsChecks } from 'cdk-nag';
import { LINT_SUPPRESSIONS } from '../lib/nag';
import { buildStack, resourcesOfType } from './support';

interface Acknowledgement {
  readonly path: string;
  readonly id: string;
  readonly reason: string;
}

/**
 * Builds the stack with every `Validations.acknowledge` recorded instead of applied, so the
 * raw cdk-nag findings and the acknowledgements can be compared one to one.
 */
function findingsAndAcknowledgements(context: Record<string, unknown>) {
  const recorded: Acknowledgement[] = [];
  const original = Validations.prototype.acknowledge;
  Validations.prototype.acknowledge = function (this: unknown, ...rules: { id: string; reason: string }[]) {
    const scopePath = (this as { scope: { node: { path: string } } }).scope.node.path;
    for (const rule of rules) {
      recorded.push({ path: scopePath, id: rule.id, reason: rule.reason });
    }
  };
  try {
    const built = buildStack(context);
    const report = new AwsSolutionsChecks(built.app).validateScope(built.stack);
    const findings = report.violations.flatMap((violation) =>
      violation.violatingResources.map((resource) => ({ id: violation.ruleName, path: resource.constructPath ?? '' })),
    );
    return { findings, acknowledgements: recorded };
  } finally {
    Validations.prototype.acknowledge = original;
  }
}

const VARIANTS: Record<string, Record<string, unknown>> = {
  default: {},
  'with X-Ray tracing': { tracing: 'true' },
  'with a WAF web ACL': { webAclArn: 'arn:aws:wafv2:eu-west-1:123456789012:regional/webacl/opx/abc' },
  'without the API Gateway account role': { apiGatewayAccountRole: 'false' },
  'on restored tables': {
    restoredTables: JSON.stringify({
      tablePrefix: 'opx-r1',
      eventsStreamArn: 'arn:aws:dynamodb:eu-west-1:123456789012:table/opx-r1-events/stream/2026-01-02T03:04:05.678',
    }),
  },
};

describe('cdk-nag AwsSolutions', () => {
  for (const [variant, context] of Object.entries(VARIANTS)) {
    it(`${variant}: no finding is left unacknowledged`, () => {
      const built = buildStack(context);
      const report = new AwsSolutionsChecks(built.app).validateScope(built.stack);
      assert.deepEqual(
        report.violations.map((v) => `${v.ruleName} at ${v.violatingResources.map((r) => r.constructPath).join(', ')}`),
        [],
      );
      assert.equal(report.success, true);
    });

    it(`${variant}: every acknowledgement matches a finding, on the resource it names, with a reason`, () => {
      const { findings, acknowledgements } = findingsAndAcknowledgements(context);
      const covers = (ack: Acknowledgement, finding: { id: string; path: string }) =>
        ack.id === finding.id && (finding.path === ack.path || finding.path.startsWith(`${ack.path}/`));
      for (const finding of findings) {
        assert.ok(
          acknowledgements.some((ack) => covers(ack, finding)),
          `finding ${finding.id} at ${finding.path} has no acknowledgement`,
        );
      }
      for (const ack of acknowledgements) {
        assert.ok(findings.some((finding) => covers(ack, finding)), `stale acknowledgement ${ack.id} at ${ack.path}`);
        assert.ok(ack.reason.length >= 60, `acknowledgement ${ack.id} at ${ack.path} needs a specific reason`);
      }
      // A finding acknowledged at the stack would silence that rule for everything: not allowed.
      for (const ack of acknowledgements) {
        assert.ok(ack.path.split('/').length >= 2, `${ack.id} is acknowledged for the whole stack`);
      }
    });
  }

  it('the suppression list is the reviewed one', () => {
    const { acknowledgements } = findingsAndAcknowledgements({});
    const rules = [...new Set(acknowledgements.map((ack) => ack.id.replace(/\[.*$/, '')))].sort();
    assert.deepEqual(rules, ['AwsSolutions-APIG3', 'AwsSolutions-COG4', 'AwsSolutions-IAM4', 'AwsSolutions-IAM5', 'AwsSolutions-SQS3']);
  });

  const outdirs: string[] = [];
  after(() => outdirs.forEach((dir) => fs.rmSync(dir, { recursive: true, force: true })));

  it('synthesizes with the AwsSolutions pack registered as the app does', () => {
    const built = buildStack();
    Validations.of(built.app).addPlugins(new AwsSolutionsChecks(built.app));
    assert.doesNotThrow(() => built.app.synth({ force: true }));
  });

  it('fails synthesis on an unacknowledged finding (the check is not vacuous)', () => {
    const outdir = fs.mkdtempSync(path.join(os.tmpdir(), 'opx-nag-'));
    outdirs.push(outdir);
    const app = new App({ outdir, builtinCloudFormationValidation: false });
    const stack = new Stack(app, 'bad');
    new sqs.Queue(stack, 'PlainQueue', { encryption: sqs.QueueEncryption.UNENCRYPTED });
    Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
    const originalError = console.error;
    console.error = () => undefined; // the validation report is printed; the assertion is what matters
    try {
      assert.throws(() => app.synth(), /Validation failed/);
    } finally {
      console.error = originalError;
    }
  });
});

describe('cfn-lint and checkov suppressions', () => {
  const built = buildStack();
  const traced = buildStack({ tracing: 'true' });

  it('every suppression has a reason and names one resource type', () => {
    for (const suppression of LINT_SUPPRESSIONS) {
      assert.ok(suppression.reason.length > 40, `${suppression.tool} ${suppression.id} has a reason`);
      assert.match(suppression.resourceType, /^AWS::[A-Za-z0-9]+::[A-Za-z0-9]+$/);
    }
  });

  it('is written into the metadata of exactly the resources of its type', () => {
    for (const suppression of LINT_SUPPRESSIONS.filter((s) => s.applies === undefined)) {
      const resources = resourcesOfType(built.json, suppression.resourceType);
      assert.ok(resources.length > 0, `${suppression.id}: the stack has ${suppression.resourceType}`);
      for (const [id, resource] of resources) {
        const metadata = resource.Metadata ?? {};
        const ids =
          suppression.tool === 'cfn-lint'
            ? (metadata['cfn-lint']?.config?.ignore_checks as string[])
            : (metadata.checkov?.skip as { id: string }[] | undefined)?.map((skip) => skip.id);
        assert.ok(ids?.includes(suppression.id), `${id} suppresses ${suppression.id}`);
      }
    }
    for (const [id, resource] of Object.entries(built.json.Resources)) {
      const types = LINT_SUPPRESSIONS.map((s) => s.resourceType);
      if (!types.includes(resource.Type)) {
        assert.equal(resource.Metadata?.checkov, undefined, `${id} suppresses nothing`);
        assert.equal(resource.Metadata?.['cfn-lint'], undefined, `${id} suppresses nothing`);
      }
    }
  });

  it('the API X-Ray finding is suppressed only while tracing is off', () => {
    const skipsOf = (json: typeof built.json) =>
      resourcesOfType(json, 'AWS::ApiGateway::Stage').flatMap(([, stage]) =>
        ((stage.Metadata?.checkov?.skip ?? []) as { id: string }[]).map((skip) => skip.id),
      );
    assert.ok(skipsOf(built.json).includes('CKV_AWS_73'));
    assert.ok(!skipsOf(traced.json).includes('CKV_AWS_73'));
  });
});
