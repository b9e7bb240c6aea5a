// Shared test helpers: build the stack in process with the same feature flags as `cdk synth`
// (read from cdk.json) and the placeholder Lambda assets, and walk the synthesized template.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { App } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { OpxConfig, configFromContext } from '../lib/config';
import { OpxStack } from '../lib/opx-stack';

/** infra/ */
export const INFRA_DIR = path.resolve(__dirname, '..');
/** The placeholder asset directory: one `<function>/bootstrap` shell script per function. */
export const FIXTURE_ASSET_DIR = path.join(INFRA_DIR, 'test', 'fixtures', 'lambda');
/** A concrete environment, so ARNs in assertions are stable. */
export const TEST_ENV = { account: '123456789012', region: 'eu-west-1' };

/** The context of cdk.json: the same feature flags the CLI synth uses. */
export function cdkJsonContext(): Record<string, unknown> {
  const cdkJson = JSON.parse(fs.readFileSync(path.join(INFRA_DIR, 'cdk.json'), 'utf8')) as {
    context: Record<string, unknown>;
  };
  return cdkJson.context;
}

/** Result of {@link buildStack}. */
export interface Built {
  readonly app: App;
  readonly stack: OpxStack;
  readonly template: Template;
  readonly json: CfnTemplate;
}

/** The parts of a CloudFormation template the tests read. */
export interface CfnTemplate {
  Resources: Record<string, CfnResource>;
}

/** One resource of a template. */
export interface CfnResource {
  Type: string;
  Properties?: Record<string, any>;
  Metadata?: Record<string, any>;
  DeletionPolicy?: string;
  UpdateReplacePolicy?: string;
}

/**
 * Builds the stack with the cdk.json feature flags, the fixture assets, `context` on top (as
 * `-c key=value` would) and `configOverrides` on top of the parsed configuration.
 * CDK's built-in CloudFormation schema validation is left to the CLI synth test
 * (synth.test.ts): it takes five to ten seconds per process and checks nothing these tests assert.
 */
export function buildStack(context: Record<string, unknown> = {}, configOverrides: Partial<OpxConfig> = {}): Built {
  const app = new App({
    builtinCloudFormationValidation: false,
    context: {
      ...cdkJsonContext(),
      // As the CLI sets it: asset paths in resource metadata, so tests can see what is bundled.
      'aws:cdk:enable-asset-metadata': true,
      lambdaAssetDir: FIXTURE_ASSET_DIR,
      ...context,
    },
  });
  const config = { ...configFromContext((key) => app.node.tryGetContext(key), INFRA_DIR), ...configOverrides };
  const stack = new OpxStack(app, 'opx', { config, env: TEST_ENV });
  const template = Template.fromStack(stack);
  return { app, stack, template, json: template.toJSON() as CfnTemplate };
}

/** Resources of one type, by logical id. */
export function resourcesOfType(json: CfnTemplate, type: string): [string, CfnResource][] {
  return Object.entries(json.Resources).filter(([, resource]) => resource.Type === type);
}

/** The logical id of a construct's CloudFormation resource. */
export function logicalId(built: Built, construct: { node: { defaultChild?: unknown } }): string {
  const child = construct.node.defaultChild;
  if (child === undefined) {
    throw new Error('construct has no default child');
  }
  return built.stack.getLogicalId(child as never);
}

/** Whether `value` (any JSON) mentions the logical id (a Ref or Fn::GetAtt to it). */
export function references(value: unknown, id: string): boolean {
  return (JSON.stringify(value) ?? '').includes(`"${id}"`);
}

/** Every value as a list. */
export function asList<T>(value: T | T[] | undefined): T[] {
  if (value === undefined) {
    return [];
  }
  return Array.isArray(value) ? value : [value];
}

/** One policy statement. */
export interface Statement {
  Effect: 'Allow' | 'Deny';
  Action?: string | string[];
  Resource?: unknown;
  Principal?: unknown;
  Sid?: string;
  Condition?: unknown;
}

/** A policy document, where it came from and whose identity it belongs to. */
export interface FoundPolicy {
  /** Logical id of the resource holding it. */
  readonly holder: string;
  /** `identity` (IAM policies) or `resource` (queue, topic, key, bus policies). */
  readonly kind: 'identity' | 'resource';
  /** Roles it is attached to (identity policies). */
  readonly roles: string[];
  readonly statements: Statement[];
}

/** Every policy document in the template: identity policies and resource policies. */
export function allPolicies(json: CfnTemplate): FoundPolicy[] {
  const found: FoundPolicy[] = [];
  for (const [id, resource] of Object.entries(json.Resources)) {
    const props = resource.Properties ?? {};
    const roleIds = (refs: unknown): string[] => asList(refs as unknown[]).map((ref) => (ref as { Ref: string }).Ref);
    switch (resource.Type) {
      case 'AWS::IAM::Policy':
        found.push({ holder: id, kind: 'identity', roles: roleIds(props.Roles), statements: props.PolicyDocument.Statement });
        break;
      case 'AWS::IAM::ManagedPolicy': {
        const attachedTo = Object.entries(json.Resources)
          .filter(([, r]) => r.Type === 'AWS::IAM::Role' && references(r.Properties?.ManagedPolicyArns, id))
          .map(([roleId]) => roleId);
        found.push({ holder: id, kind: 'identity', roles: attachedTo, statements: props.PolicyDocument.Statement });
        break;
      }
      case 'AWS::IAM::Role':
        for (const inline of asList(props.Policies as { PolicyDocument: { Statement: Statement[] } }[])) {
          found.push({ holder: id, kind: 'identity', roles: [id], statements: inline.PolicyDocument.Statement });
        }
        break;
      case 'AWS::SQS::QueuePolicy':
      case 'AWS::SNS::TopicPolicy':
        found.push({ holder: id, kind: 'resource', roles: [], statements: props.PolicyDocument.Statement });
        break;
      case 'AWS::KMS::Key':
        found.push({ holder: id, kind: 'resource', roles: [], statements: props.KeyPolicy.Statement });
        break;
      case 'AWS::Events::EventBusPolicy':
        found.push({ holder: id, kind: 'resource', roles: [], statements: [props.Statement] });
        break;
      default:
        break;
    }
  }
  return found;
}

/** Actions that only read (by the verb of the action name). */
export function isReadOnlyAction(action: string): boolean {
  const verb = action.split(':')[1] ?? '';
  return /^(Get|List|Describe|Query|Scan|BatchGet|ConditionCheck)/.test(verb);
}
