import { Stack, Validations } from 'aws-cdk-lib';
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
