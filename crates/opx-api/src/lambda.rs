//! The router behind API Gateway REST with `AWS_IAM` authorization (feature `lambda`).
//!
//! API Gateway has already verified the SigV4 signature when the function runs; the caller
//! it verified is in the request context (`requestContext.identity.userArn`). That ARN is
//! the principal, and its roles come from the role map (`OPX_ROLE_MAP`). A request without
//! it is refused with 403: it can only come from a misconfigured method (authorization
//! `NONE`) or a direct invocation, and both must fail closed.
//!
//! `lambda_http` puts the stage in front of the path (`/prod/incidents`); [`service`] gives
//! the router the path API Gateway matched (`/incidents`), so the routes do not depend on
//! the stage name.

use crate::auth::{AuthError, Authenticator, Caller, RoleMap};
use axum::http::request::Parts;
use axum::http::Uri;
use axum::Router;
use lambda_http::request::RequestContext;
use lambda_http::RequestExt;
use opx_domain::incident::Principal;

/// The environment variable holding the role map (JSON, see [`RoleMap`]).
pub const ENV_ROLE_MAP: &str = "OPX_ROLE_MAP";

/// Authenticates by the identity API Gateway's IAM authorization put in the request context.
#[derive(Clone, Debug)]
pub struct ApiGatewayIamAuthenticator {
    roles: RoleMap,
}

impl ApiGatewayIamAuthenticator {
    /// Grants roles by `roles`.
    pub fn new(roles: RoleMap) -> ApiGatewayIamAuthenticator {
        ApiGatewayIamAuthenticator { roles }
    }
}

impl Authenticator for ApiGatewayIamAuthenticator {
    fn authenticate(&self, head: &Parts, _body: &[u8]) -> Result<Caller, AuthError> {
        let identity =
            match head.extensions.get::<RequestContext>() {
                Some(RequestContext::ApiGatewayV1(context)) => &context.identity,
                _ => return Err(AuthError::NoPrincipal(
                    "the request did not come through API Gateway REST with IAM authorization; \
                     call the API's stage URL with a SigV4-signed request"
                        .to_owned(),
                )),
            };
        let Some(arn) = identity.user_arn.as_deref().filter(|arn| !arn.is_empty()) else {
            return Err(AuthError::NoPrincipal(
                "the request context carries no caller identity (userArn); the method must use AWS_IAM authorization"
                    .to_owned(),
            ));
        };
        let principal = Principal::iam(arn).map_err(|error| {
            AuthError::NoPrincipal(format!("the caller identity is not usable: {error}"))
        })?;
        let roles = self.roles.roles_of(principal.as_str());
        Ok(Caller { principal, roles })
    }
}

/// Rewrites the request path to the one API Gateway matched (without the stage), keeping
/// the query; requests that did not come from API Gateway pass unchanged.
pub fn strip_stage(mut request: lambda_http::Request) -> lambda_http::Request {
    let raw_path = request.raw_http_path().to_owned();
    if raw_path.is_empty() {
        return request;
    }
    let path_and_query = match request.uri().query() {
        Some(query) => format!("{raw_path}?{query}"),
        None => raw_path,
    };
    let mut parts = request.uri().clone().into_parts();
    if let Ok(path_and_query) = path_and_query.parse() {
        parts.path_and_query = Some(path_and_query);
        if let Ok(uri) = Uri::from_parts(parts) {
            *request.uri_mut() = uri;
        }
    }
    request
}

/// The router as the Lambda function serves it: [`strip_stage`] in front. Pass it to
/// `lambda_http::run`.
pub fn service(
    router: Router,
) -> tower::util::MapRequest<Router, fn(lambda_http::Request) -> lambda_http::Request> {
    tower::util::MapRequest::new(router, strip_stage as fn(_) -> _)
}
