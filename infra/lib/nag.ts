import { CfnResource, IAspect, Stack, Validations } from 'aws-cdk-lib';
import type { CfnStage } from 'aws-cdk-lib/aws-apigateway';
import { IConstruct } from 'constructs';
// cdk-nag renders a CloudFormation reference in a finding id with this function; reusing the
// pinned package's own renderer keeps acknowledgement ids equal to the finding ids it emits.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { flattenCfnReference } = require('cdk-nag/lib/utils/flatten-cfn-reference') as {
  flattenCfnReference: (reference: unknown) => string;
};

/**
 * Acknowledges cdk-nag's `AwsSolutions-IAM5` finding for one wildcard resource of a policy
 * attached at `scope`, with the reason it is needed. Each wildcard resource is acknowledged
 * separately (cdk-nag 3 has no rule-wide suppression), so a new wildcard still fails synth.
 */
export function acknowledgeWildcardResource(scope: IConstruct, resource: string, reason: string): void {
  const rendered = flattenCfnReference(Stack.of(scope).resolve(resource));
  Validations.of(scope).acknowledge({ id: `AwsSolutions-IAM5[Resource::${rendered}]`, reason });
}

/** {@link acknowledgeWildcardResource} for each resource of the list that contains a `*`. */
export function acknowledgeWildcardResources(scope: IConstruct, resources: string[], reason: string): void {
  for (const resource of resources) {
    if (flattenCfnReference(Stack.of(scope).resolve(resource)).includes('*')) {
      acknowledgeWildcardResource(scope, resource, reason);
    }
  }
}

/** A finding of `cfn-lint` or `checkov` on the synthesized template that opx accepts, and why. */
export interface LintSuppression {
  readonly tool: 'cfn-lint' | 'checkov';
  /** The rule or check id. */
  readonly id: string;
  /** The CloudFormation type it is suppressed on (never template-wide). */
  readonly resourceType: string;
  /** Only on the resources this holds for (default: every resource of the type). */
  readonly applies?: (resource: CfnResource) => boolean;
  readonly reason: string;
}

/**
 * Every suppressed `cfn-lint` and `checkov` finding, with its reason (`scripts/check` runs both on
 * the synthesized template and fails on anything else). They are written into each resource's
 * metadata (`cfn-lint.config.ignore_checks`, `checkov.skip`), so a finding on a resource of
 * another type, or a new rule, still fails.
 */
export const LINT_SUPPRESSIONS: readonly LintSuppression[] = [
  {
    tool: 'cfn-lint',
    id: 'W3005',
    resourceType: 'AWS::Lambda::Function',
    reason: 'CDK makes every function depend on its role and the role\'s default policy, so it is not created before it may write its logs; the explicit DependsOn next to the GetAtt of the role is redundant and harmless.',
  },
  {
    tool: 'checkov',
    id: 'CKV_AWS_116',
    resourceType: 'AWS::Lambda::Function',
    reason: 'Failures go to SQS without a function DLQ: asynchronously invoked functions have an on-failure destination (EventInvokeConfig, which also gets the event and the error), fanout\'s stream mapping has an on-failure queue, and replay and incident-api are invoked synchronously, where a DLQ never receives anything.',
  },
  {
    tool: 'checkov',
    id: 'CKV_AWS_117',
    resourceType: 'AWS::Lambda::Function',
    reason: 'The functions reach only AWS APIs (DynamoDB, EventBridge) and nothing in a VPC; a VPC would add NAT or endpoints (cost, one more failure path) and protect nothing.',
  },
  {
    tool: 'checkov',
    id: 'CKV_AWS_173',
    resourceType: 'AWS::Lambda::Function',
    reason: 'The environment holds no secrets (table prefix, bus name, sweep age, the role map of IAM ARNs) and Lambda encrypts it at rest with its AWS-managed key.',
  },
  {
    tool: 'checkov',
    id: 'CKV_AWS_119',
    resourceType: 'AWS::DynamoDB::Table',
    reason: 'The tables use the AWS-managed key aws/dynamodb on purpose: no key that can be disabled or scheduled for deletion under the audit log, and no KMS grants per function (README, security review notes).',
  },
  {
    tool: 'checkov',
    id: 'CKV_AWS_27',
    resourceType: 'AWS::SQS::Queue',
    reason: 'Every queue is encrypted with SSE-SQS (SqsManagedSseEnabled), which the check does not recognise; a KMS key would need key-policy grants for EventBridge, SNS and Lambda destinations and could itself make dead-lettering fail.',
  },
  {
    tool: 'checkov',
    id: 'CKV_AWS_158',
    resourceType: 'AWS::Logs::LogGroup',
    reason: 'CloudWatch Logs encrypts every log group at rest; a customer-managed key would put a key policy, and a key that can be disabled, in front of the decision trail and the access log, which must keep being written.',
  },
  {
    tool: 'checkov',
    id: 'CKV_AWS_120',
    resourceType: 'AWS::ApiGateway::Stage',
    reason: 'No response caching: every answer is the current state of an incident (a cached GET after a transition would show the old state), and callers are few.',
  },
  {
    tool: 'checkov',
    id: 'CKV_AWS_73',
    resourceType: 'AWS::ApiGateway::Stage',
    applies: (resource) => (resource as CfnStage).tracingEnabled !== true,
    reason: 'X-Ray on the stage and the functions is opt-in (-c tracing=true): traces cost per request and the access log already names caller, route, status and latency.',
  },
];

/** Writes {@link LINT_SUPPRESSIONS} into the metadata of the resources they are about. */
export class LintSuppressions implements IAspect {
  visit(node: IConstruct): void {
    if (!CfnResource.isCfnResource(node)) {
      return;
    }
    const suppressions = LINT_SUPPRESSIONS.filter(
      (s) => s.resourceType === node.cfnResourceType && (s.applies === undefined || s.applies(node)),
    );
    const cfnLint = suppressions.filter((s) => s.tool === 'cfn-lint').map((s) => s.id);
    const checkov = suppressions.filter((s) => s.tool === 'checkov').map((s) => ({ id: s.id, comment: s.reason }));
    if (cfnLint.length > 0) {
      node.addMetadata('cfn-lint', { config: { ignore_checks: cfnLint } });
    }
    if (checkov.length > 0) {
      node.addMetadata('checkov', { skip: checkov });
    }
  }
}
