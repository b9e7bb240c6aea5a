import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { API_ROUTES, API_STAGE_NAME } from '../lib/api';
import { CfnTemplate, buildStack, logicalId, resourcesOfType } from './support';

const built = buildStack();
const apiId = logicalId(built, built.stack.api.api);

/** `METHOD /path` of every method in the template, rebuilt from the resource tree. */
function declaredRoutes(json: CfnTemplate): Map<string, Record<string, any>> {
  const pathOf = (resourceRef: unknown): string => {
    const ref = resourceRef as { Ref?: string; 'Fn::GetAtt'?: [string, string] };
    if (ref['Fn::GetAtt']) {
      return ''; // the root resource
    }
    const resource = json.Resources[ref.Ref!].Properties!;
    return `${pathOf(resource.ParentId)}/${resource.PathPart}`;
  };
  const routes = new Map<string, Record<string, any>>();
  for (const [, method] of resourcesOfType(json, 'AWS::ApiGateway::Method')) {
    routes.set(`${method.Properties!.HttpMethod} ${pathOf(method.Properties!.ResourceId)}`, method.Properties!);
  }
  return routes;
}

describe('incident API', () => {
  const routes = declaredRoutes(built.json);

  it('declares exactly the routes of the incident API', () => {
    assert.deepEqual(
      [...routes.keys()].sort(),
      API_ROUTES.map((route) => `${route.method} ${route.path}`).sort(),
    );
    assert.deepEqual([...routes.keys()].sort(), [
      'GET /incidents',
      'GET /incidents/{id}',
      'GET /incidents/{id}/evidence',
      'GET /incidents/{id}/replay',
      'GET /incidents/{id}/timeline',
      'POST /incidents/{id}/assignee',
      'POST /incidents/{id}/notes',
      'POST /incidents/{id}/severity',
      'POST /incidents/{id}/transitions',
      'POST /signals',
    ]);
  });

  it('uses AWS_IAM on every method', () => {
    const methods = resourcesOfType(built.json, 'AWS::ApiGateway::Method');
    assert.equal(methods.length, 10);
    for (const [id, method] of methods) {
      assert.equal(method.Properties!.AuthorizationType, 'AWS_IAM', `${id} authorization`);
    }
  });

  it('proxies every method to incident-api', () => {
    const handler = logicalId(built, built.stack.functions['incident-api'].function);
    for (const [route, method] of routes) {
      assert.equal(method.Integration.Type, 'AWS_PROXY', `${route} is a Lambda proxy`);
      assert.ok(JSON.stringify(method.Integration.Uri).includes(`"${handler}"`), `${route} goes to incident-api`);
    }
  });

  it('checks that incident command bodies are JSON objects, and leaves POST /signals to the function', () => {
    for (const [route, method] of routes) {
      assert.ok(method.RequestValidatorId, `${route} has a validator`);
      const isCommand = route.startsWith('POST /incidents/');
      assert.equal(method.RequestModels !== undefined, isCommand, `${route} body model`);
    }
    built.template.hasResourceProperties('AWS::ApiGateway::Model', {
      ContentType: 'application/json',
      Schema: { $schema: 'http://json-schema.org/draft-04/schema#', type: 'object' },
    });
  });

  it('logs access as JSON to its own log group, with the caller ARN', () => {
    const stage = resourcesOfType(built.json, 'AWS::ApiGateway::Stage')[0][1].Properties!;
    assert.equal(stage.StageName, API_STAGE_NAME);
    const accessLogs = logicalId(built, built.stack.api.accessLogs);
    assert.ok(JSON.stringify(stage.AccessLogSetting.DestinationArn).includes(accessLogs));
    const format = JSON.parse(stage.AccessLogSetting.Format);
    assert.equal(format.userArn, '$context.identity.userArn');
    assert.equal(format.status, '$context.status');
    const logGroup = built.json.Resources[accessLogs];
    assert.equal(logGroup.Properties!.RetentionInDays, 90);
  });

  it('throttles the stage and logs errors without bodies', () => {
    const stage = resourcesOfType(built.json, 'AWS::ApiGateway::Stage')[0][1].Properties!;
    const settings = stage.MethodSettings[0];
    assert.equal(settings.ThrottlingRateLimit, 50);
    assert.equal(settings.ThrottlingBurstLimit, 100);
    assert.equal(settings.LoggingLevel, 'ERROR');
    assert.equal(settings.DataTraceEnabled, false);
    const custom = buildStack({ apiThrottleRateLimit: 5, apiThrottleBurstLimit: 10 });
    const customStage = resourcesOfType(custom.json, 'AWS::ApiGateway::Stage')[0][1].Properties!;
    assert.equal(customStage.MethodSettings[0].ThrottlingRateLimit, 5);
    assert.equal(customStage.MethodSettings[0].ThrottlingBurstLimit, 10);
  });

  it('answers gateway errors as problem+json', () => {
    for (const type of ['DEFAULT_4XX', 'DEFAULT_5XX']) {
      built.template.hasResourceProperties('AWS::ApiGateway::GatewayResponse', {
        ResponseType: type,
        RestApiId: { Ref: apiId },
        ResponseParameters: { 'gatewayresponse.header.Content-Type': "'application/problem+json'" },
      });
    }
  });

  it('associates a WAF web ACL only when one is given', () => {
    assert.equal(resourcesOfType(built.json, 'AWS::WAFv2::WebACLAssociation').length, 0);
    const webAclArn = 'arn:aws:wafv2:eu-west-1:123456789012:regional/webacl/opx/abc';
    const withWaf = buildStack({ webAclArn });
    withWaf.template.hasResourceProperties('AWS::WAFv2::WebACLAssociation', { WebACLArn: webAclArn });
  });

  it('creates the account-level logging role unless told the account has one', () => {
    assert.equal(resourcesOfType(built.json, 'AWS::ApiGateway::Account').length, 1);
    const without = buildStack({ apiGatewayAccountRole: 'false' });
    assert.equal(resourcesOfType(without.json, 'AWS::ApiGateway::Account').length, 0);
  });
});
