import { CfnOutput, RemovalPolicy, Stack, Validations } from 'aws-cdk-lib';
import * as apigw from 'aws-cdk-lib/aws-apigateway';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as wafv2 from 'aws-cdk-lib/aws-wafv2';
import { Construct } from 'constructs';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { ACCESS_LEVELS, AccessLevel, RoleArnsByLevel } from './config';
import { acknowledgeWildcardResources } from './nag';

/** One route of the incident API. */
export interface ApiRoute {
  /** HTTP method. */
  readonly method: 'GET' | 'POST';
  /** Resource path as API Gateway declares it (`{id}` for the incident id). */
  readonly path: string;
  /** The OpenAPI `operationId`. */
  readonly operationId: string;
  /** Access levels allowed to call it (`execute-api:Invoke`). */
  readonly levels: readonly AccessLevel[];
  /** The `opx` subcommand, for a human action. */
  readonly command?: string;
  /** Whether API Gateway checks the body is a JSON object before invoking the function. */
  readonly jsonObjectBody: boolean;
}

/**
 * The route table the Rust code generates (`opx_api::routes::route_table_json`; a Rust test
 * fails when this file differs from it). The paths, levels and bodies are declared there once.
 */
export const ROUTE_TABLE_PATH = path.join(__dirname, 'generated', 'routes.json');

/** Reads the generated route table, refusing anything this app cannot declare. */
export function parseRouteTable(text: string): ApiRoute[] {
  const document = JSON.parse(text) as { routes?: unknown };
  if (!Array.isArray(document.routes) || document.routes.length === 0) {
    throw new Error(`${ROUTE_TABLE_PATH}: no routes; regenerate it (see its generated_by)`);
  }
  return document.routes.map((row: Record<string, unknown>, index: number) => {
    const where = `${ROUTE_TABLE_PATH}: route ${index}`;
    const { method, path: routePath, operation_id: operationId, levels, command, json_object_body: jsonObjectBody } = row;
    if (method !== 'GET' && method !== 'POST') {
      throw new Error(`${where}: method ${String(method)} is not GET or POST`);
    }
    if (typeof routePath !== 'string' || !routePath.startsWith('/')) {
      throw new Error(`${where}: path ${String(routePath)} is not a path`);
    }
    if (typeof operationId !== 'string' || typeof jsonObjectBody !== 'boolean') {
      throw new Error(`${where}: operation_id and json_object_body are required`);
    }
    if (!Array.isArray(levels) || levels.length === 0 || !levels.every((level) => (ACCESS_LEVELS as readonly unknown[]).includes(level))) {
      throw new Error(`${where}: levels ${JSON.stringify(levels)} are not among ${ACCESS_LEVELS.join(', ')}`);
    }
    if (command !== null && typeof command !== 'string') {
      throw new Error(`${where}: command must be a string or null`);
    }
    return {
      method,
      path: routePath,
      operationId,
      levels: levels as AccessLevel[],
      ...(command === null ? {} : { command }),
      jsonObjectBody,
    };
  });
}

/**
 * Every route, and who may call it. Approvers hold the responder routes: the extra power of an
 * approver (closing, for example) is decided inside the API from the role map, because IAM
 * cannot see the body of `POST /incidents/{id}/transitions`. Signals come as a single payload,
 * an array or an Alertmanager webhook: the function validates them (and records rejects), so
 * API Gateway does not constrain that body.
 */
export const API_ROUTES: readonly ApiRoute[] = parseRouteTable(readFileSync(ROUTE_TABLE_PATH, 'utf8'));

/** The deployed stage name; part of every `execute-api` ARN. */
export const API_STAGE_NAME = 'v1';

/** The IAM resource path of a route: path parameters become `*`. */
export function routeArnPath(route: ApiRoute): string {
  return route.path.replace(/\{[^}]+\}/g, '*');
}

/** Props of {@link IncidentApi}. */
export interface IncidentApiProps {
  /** Name prefix. */
  readonly prefix: string;
  /** The `incident-api` function, integrated as a Lambda proxy on every route. */
  readonly handler: lambda.IFunction;
  /** Stage throttling: steady-state requests per second and burst (see `apiStageThrottle`). */
  readonly throttle: { readonly rateLimit: number; readonly burstLimit: number };
  /** Retention of the access log group. */
  readonly logRetention: logs.RetentionDays;
  /** X-Ray tracing on the stage. */
  readonly tracing: boolean;
  /** Create the account-level CloudWatch role API Gateway needs to write logs. */
  readonly accountRole: boolean;
  /** WAF web ACL to associate with the stage. */
  readonly webAclArn?: string;
  /** Existing roles mapped to access levels besides the stack's own (`extraRoleArns`). */
  readonly extraRoleArns: RoleArnsByLevel;
}

/** The name of the stack's own role for an access level. */
export function apiRoleName(prefix: string, level: AccessLevel): string {
  return `${prefix}-api-${level}`;
}

/** The resource-policy form of a route: `execute-api:/<stage>/<METHOD>/<path>`, path parameters as `*`. */
export function routePolicyResource(route: ApiRoute): string {
  return `execute-api:/${API_STAGE_NAME}/${route.method}${routeArnPath(route)}`;
}

/**
 * The incident API: API Gateway REST, `AWS_IAM` on every method, all routes a Lambda proxy to
 * `incident-api`; JSON access logs; stage throttling; and one IAM role (with a managed policy)
 * per access level that may invoke exactly that level's routes.
 *
 * The API's resource policy admits only the role map: each level's principals may invoke that
 * level's routes, and every other principal is denied, whatever its own IAM policies allow
 * (an administrator's `execute-api:*` included).
 */
export class IncidentApi extends Construct {
  /** The REST API. */
  readonly api: apigw.RestApi;
  /** The access log group. */
  readonly accessLogs: logs.LogGroup;
  /** The execution log group, `API-Gateway-Execution-Logs_<rest api id>/<stage>`. */
  readonly executionLogs: logs.LogGroup;
  /** The role of each access level. */
  readonly roles: Record<AccessLevel, iam.Role>;
  /** The managed policy of each access level (attach it to existing roles, then list them in `extraRoleArns`). */
  readonly policies: Record<AccessLevel, iam.ManagedPolicy>;
  /** `OPX_ROLE_MAP`: the role ARNs of each access level, the stack's role first. */
  readonly roleMap: Record<AccessLevel, string[]>;

  constructor(scope: Construct, id: string, props: IncidentApiProps) {
    super(scope, id);
    this.accessLogs = new logs.LogGroup(this, 'AccessLogs', {
      logGroupName: `/aws/apigateway/${props.prefix}-api/access`,
      retention: props.logRetention,
      // Access logs say which principal called what: an audit record, kept past a stack delete
      // (but not past a rolled-back first deploy, whose retry would find the name taken).
      removalPolicy: RemovalPolicy.RETAIN_ON_UPDATE_OR_DELETE,
    });

    this.api = new apigw.RestApi(this, 'Api', {
      restApiName: `${props.prefix}-api`,
      description: 'opx incident API (IAM-authorised; every route is served by the incident-api function)',
      endpointTypes: [apigw.EndpointType.REGIONAL],
      cloudWatchRole: props.accountRole,
      // The account-level role outlives this stack: other APIs in the account may rely on it
      // (except after a rolled-back first deploy, when nothing can rely on it yet).
      cloudWatchRoleRemovalPolicy: props.accountRole ? RemovalPolicy.RETAIN_ON_UPDATE_OR_DELETE : undefined,
      defaultMethodOptions: { authorizationType: apigw.AuthorizationType.IAM },
      deployOptions: {
        stageName: API_STAGE_NAME,
        accessLogDestination: new apigw.LogGroupLogDestination(this.accessLogs),
        accessLogFormat: apigw.AccessLogFormat.custom(
          JSON.stringify({
            requestId: apigw.AccessLogField.contextRequestId(),
            requestTime: apigw.AccessLogField.contextRequestTimeEpoch(),
            sourceIp: apigw.AccessLogField.contextIdentitySourceIp(),
            caller: apigw.AccessLogField.contextIdentityCaller(),
            userArn: apigw.AccessLogField.contextIdentityUserArn(),
            httpMethod: apigw.AccessLogField.contextHttpMethod(),
            resourcePath: apigw.AccessLogField.contextResourcePath(),
            status: apigw.AccessLogField.contextStatus(),
            responseLength: apigw.AccessLogField.contextResponseLength(),
            integrationLatency: apigw.AccessLogField.contextIntegrationLatency(),
            errorMessage: apigw.AccessLogField.contextErrorMessage(),
          }),
        ),
        // Execution logs at ERROR only, never request or response bodies (they carry notes).
        loggingLevel: apigw.MethodLoggingLevel.ERROR,
        dataTraceEnabled: false,
        metricsEnabled: true,
        throttlingRateLimit: props.throttle.rateLimit,
        throttlingBurstLimit: props.throttle.burstLimit,
        tracingEnabled: props.tracing,
      },
    });
    // API Gateway writes execution logs (level ERROR) to a group it names after the API and
    // stage, and creates it itself, without retention, unless it exists: create it first.
    this.executionLogs = new logs.LogGroup(this, 'ExecutionLogs', {
      logGroupName: `API-Gateway-Execution-Logs_${this.api.restApiId}/${API_STAGE_NAME}`,
      retention: props.logRetention,
      removalPolicy: RemovalPolicy.RETAIN_ON_UPDATE_OR_DELETE,
    });
    this.api.deploymentStage.node.addDependency(this.executionLogs);
    if (props.accountRole) {
      Validations.of(this.api).acknowledge({
        id: 'AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs]',
        reason:
          'The account-level API Gateway logging role must write any API\'s execution log group in the account and region; AmazonAPIGatewayPushToCloudWatchLogs is the policy AWS documents for it. Turn it off with -c apiGatewayAccountRole=false where the account already has one.',
      });
    }
    Validations.of(this.api).acknowledge({
      id: 'AwsSolutions-COG4',
      reason: 'Every method uses AWS_IAM (SigV4) authorisation: callers are IAM principals mapped to opx roles, not Cognito users.',
    });
    if (props.webAclArn) {
      new wafv2.CfnWebACLAssociation(this, 'WebAcl', {
        resourceArn: this.api.deploymentStage.stageArn,
        webAclArn: props.webAclArn,
      });
    } else {
      Validations.of(this.api).acknowledge({
        id: 'AwsSolutions-APIG3',
        reason:
          'Unsigned requests are refused by IAM authorisation before they reach opx and the stage is throttled; a WAF web ACL is optional (-c webAclArn=ARN).',
      });
    }

    // Path parameters are always present for a matched route; the validator checks bodies
    // of the incident commands are JSON objects, which costs nothing and keeps junk out of
    // the function. Errors it produces use the same problem+json shape as the API's own.
    const validator = this.api.addRequestValidator('Validator', {
      requestValidatorName: 'body-and-parameters',
      validateRequestBody: true,
      validateRequestParameters: true,
    });
    const jsonObject = this.api.addModel('JsonObject', {
      modelName: 'JsonObject',
      contentType: 'application/json',
      schema: { schema: apigw.JsonSchemaVersion.DRAFT4, type: apigw.JsonSchemaType.OBJECT },
    });
    this.addProblemResponses();

    // One integration for every method, one resource-policy entry on the function for the
    // whole API (per-method permissions would be 20 entries and approach the policy size limit).
    const integration = new apigw.LambdaIntegration(props.handler, { scopePermissionToMethod: false });
    for (const route of API_ROUTES) {
      const resource = this.api.root.resourceForPath(route.path);
      resource.addMethod(route.method, integration, {
        authorizationType: apigw.AuthorizationType.IAM,
        requestValidator: validator,
        requestModels: route.jsonObjectBody ? { 'application/json': jsonObject } : undefined,
      });
    }

    const account = Stack.of(this).account;
    const policies: Partial<Record<AccessLevel, iam.ManagedPolicy>> = {};
    const roles: Partial<Record<AccessLevel, iam.Role>> = {};
    for (const level of ACCESS_LEVELS) {
      const resources = API_ROUTES.filter((route) => route.levels.includes(level)).map((route) =>
        this.api.arnForExecuteApi(route.method, routeArnPath(route), API_STAGE_NAME),
      );
      const policy = new iam.ManagedPolicy(this, `${title(level)}Policy`, {
        description: `opx API ${level}: execute-api:Invoke on exactly the ${level} routes`,
        statements: [
          new iam.PolicyStatement({ sid: 'InvokeRoutes', actions: ['execute-api:Invoke'], resources }),
        ],
      });
      acknowledgeWildcardResources(
        policy,
        resources,
        'The * stands for the {id} path parameter of one route; the method and the rest of the route are fixed.',
      );
      const role = new iam.Role(this, `${title(level)}Role`, {
        // Named, so that the resource policy can name it without a reference (the role's
        // policy refers to the API: a reference back would be a cycle).
        roleName: apiRoleName(props.prefix, level),
        // Any principal of this account that its own IAM policy allows sts:AssumeRole on this role.
        assumedBy: new iam.AccountRootPrincipal(),
        description: `opx API ${level} (principals of account ${account} allowed to assume it)`,
        managedPolicies: [policy],
      });
      policies[level] = policy;
      roles[level] = role;
      new CfnOutput(this, `${title(level)}RoleArn`, { value: role.roleArn, description: `opx API ${level} role` });
    }
    this.policies = policies as Record<AccessLevel, iam.ManagedPolicy>;
    this.roles = roles as Record<AccessLevel, iam.Role>;
    this.roleMap = Object.fromEntries(
      ACCESS_LEVELS.map((level) => [level, [this.roles[level].roleArn, ...(props.extraRoleArns[level] ?? [])]]),
    ) as Record<AccessLevel, string[]>;
    this.addResourcePolicy(props.prefix, props.extraRoleArns);
    new CfnOutput(this, 'Url', { value: this.api.url, description: 'opx incident API base URL' });
  }

  /**
   * Each level's principals may invoke that level's routes; everyone else is denied. Principals
   * are matched by `aws:PrincipalArn` (for an assumed role, the role's ARN), so the policy
   * holds no principal that IAM must resolve when the policy is set.
   */
  private addResourcePolicy(prefix: string, extraRoleArns: RoleArnsByLevel): void {
    const stack = Stack.of(this);
    const arnsOf = (level: AccessLevel) => [
      stack.formatArn({ service: 'iam', region: '', resource: 'role', resourceName: apiRoleName(prefix, level) }),
      ...(extraRoleArns[level] ?? []),
    ];
    const statements = ACCESS_LEVELS.map(
      (level) =>
        new iam.PolicyStatement({
          sid: `Invoke${title(level)}Routes`,
          principals: [new iam.AnyPrincipal()],
          actions: ['execute-api:Invoke'],
          resources: API_ROUTES.filter((route) => route.levels.includes(level)).map(routePolicyResource),
          conditions: { ArnEquals: { 'aws:PrincipalArn': arnsOf(level) } },
        }),
    );
    statements.push(
      new iam.PolicyStatement({
        sid: 'DenyOutsideRoleMap',
        effect: iam.Effect.DENY,
        principals: [new iam.AnyPrincipal()],
        actions: ['execute-api:Invoke'],
        resources: ['execute-api:/*'],
        conditions: { ArnNotEquals: { 'aws:PrincipalArn': [...new Set(ACCESS_LEVELS.flatMap(arnsOf))] } },
      }),
    );
    for (const statement of statements) {
      this.api.addToResourcePolicy(statement);
    }
  }

  /** Gateway-generated errors (auth, throttling, validation) as RFC 9457 problem+json. */
  private addProblemResponses(): void {
    const template = JSON.stringify({
      type: 'about:blank',
      title: 'request refused by API Gateway',
      code: 'gateway_$context.error.responseType',
      requestId: '$context.requestId',
    }).replace('"requestId"', '"detail":$context.error.messageString,"requestId"');
    for (const [id, type] of [
      ['Default4xx', apigw.ResponseType.DEFAULT_4XX],
      ['Default5xx', apigw.ResponseType.DEFAULT_5XX],
    ] as const) {
      this.api.addGatewayResponse(id, {
        type,
        responseHeaders: { 'Content-Type': "'application/problem+json'" },
        templates: { 'application/json': template },
      });
    }
  }
}

function title(level: string): string {
  return level.charAt(0).toUpperCase() + level.slice(1);
}
