import * as path from 'node:path';
import { App, Validations } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { configFromContext } from '../lib/config';
import { OpxStack } from '../lib/opx-stack';

// The CDK app: `npx cdk synth` / `npx cdk deploy` from infra/. Parameters come from context
// (cdk.json or -c key=value); see README.md. cdk-nag's AwsSolutions pack runs on every synth
// and an unacknowledged finding fails it.
const app = new App();
const config = configFromContext((key) => app.node.tryGetContext(key), path.resolve(__dirname, '..'));
new OpxStack(app, (app.node.tryGetContext('stackName') as string | undefined) ?? `${config.prefix}`, {
  config,
  description: 'opx: deterministic, auditable control plane for operational incidents',
  env: { account: process.env.CDK_DEFAULT_ACCOUNT, region: process.env.CDK_DEFAULT_REGION },
});
Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
