//! The guard in front of every service: load shedding, authentication and
//! authorization, as one tower layer.
//!
//! For each call it decides from the request path what the call needs:
//! health checks and reflection need nothing and are never shed; every other
//! call is first refused (`UNAUTHENTICATED`) if it carries more than one
//! `authorization` header, then takes a slot of the global in-flight limit
//! (or is refused with `RESOURCE_EXHAUSTED` at once), then must authenticate
//! — an API key in `authorization: Bearer <token>`, else a verified client
//! certificate, else (only while the server is open) nobody — and hold the
//! role the RPC needs.
//! The caller's [`Identity`] goes into the request's extensions, where the
//! handlers take the actor from; no request field can set it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tonic::Status;
use tracing::Instrument;

use crate::domain::access::{Role, Token};
use crate::store::Store;

use super::slots::{Caller, Refused, SlotLimits, Slots};
use super::status::to_status;
use super::{Identity, ANONYMOUS};

/// What a call needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Health and reflection: no credentials, no load shedding.
    Public,
    /// An authenticated caller with at least this role.
    Needs(Role),
}

/// The access of each RPC this server defines, by exact path: ours from
/// [`crate::rpc`] (which lists every method of our services, so a new RPC
/// cannot silently inherit a role), health and reflection public.
fn known_access(path: &str) -> Option<Access> {
    const PUBLIC_SERVICES: [&str; 3] = [
        "/grpc.health.v1.Health/",
        "/grpc.reflection.v1.ServerReflection/",
        "/grpc.reflection.v1alpha.ServerReflection/",
    ];
    if let Some(rpc) = crate::rpc::by_path(path) {
        return Some(Access::Needs(rpc.role));
    }
    let public = PUBLIC_SERVICES.iter().any(|service| {
        path.strip_prefix(service)
            .is_some_and(|method| !method.is_empty() && !method.contains('/'))
    });
    public.then_some(Access::Public)
}

/// The access the call at `path` (`/package.Service/Method`) needs. Unknown
/// paths need an admin: they fail closed, and a caller without a key cannot
/// even probe for them.
pub fn required_access(path: &str) -> Access {
    known_access(path).unwrap_or(Access::Needs(Role::Admin))
}

/// How callers without an API key are treated.
#[derive(Clone, Debug)]
pub struct AuthPolicy {
    /// Serve callers without credentials (as [`ANONYMOUS`], with every role)
    /// as long as no API key was ever created.
    pub allow_anonymous: bool,
    /// Role of callers identified only by a verified client certificate.
    pub client_cert_role: Role,
}

/// Builds [`Guard`]s around the server's routes.
pub struct GuardLayer<S> {
    shared: Arc<Shared<S>>,
}

impl<S> Clone for GuardLayer<S> {
    fn clone(&self) -> Self {
        GuardLayer {
            shared: self.shared.clone(),
        }
    }
}

struct Shared<S> {
    store: Arc<S>,
    policy: AuthPolicy,
    /// Slots for calls in flight: across all connections, per caller, and
    /// a share for admins ([`super::slots`]); `None`: unlimited.
    in_flight: Option<Arc<Slots>>,
}

impl<S: Store> GuardLayer<S> {
    /// A guard checking callers against `store`'s keys under `policy`, with
    /// at most `max_in_flight` guarded calls at once (0: no limit), of
    /// which one caller may hold `per_caller`, and the last sixteenth only
    /// admins may take.
    pub fn new(store: Arc<S>, policy: AuthPolicy, max_in_flight: usize, per_caller: usize) -> Self {
        let in_flight = (max_in_flight > 0).then(|| {
            Slots::new(
                SlotLimits::new(max_in_flight, per_caller),
                "calls in flight",
            )
        });
        GuardLayer {
            shared: Arc::new(Shared {
                store,
                policy,
                in_flight,
            }),
        }
    }
}

impl<S, I> tower::Layer<I> for GuardLayer<S> {
    type Service = Guard<S, I>;

    fn layer(&self, inner: I) -> Self::Service {
        Guard {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// The guard service; see the module docs.
pub struct Guard<S, I> {
    inner: I,
    shared: Arc<Shared<S>>,
}

impl<S, I: Clone> Clone for Guard<S, I> {
    fn clone(&self) -> Self {
        Guard {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S, I, B, R> tower::Service<http::Request<B>> for Guard<S, I>
where
    S: Store,
    I: tower::Service<http::Request<B>, Response = http::Response<R>> + Clone + Send + 'static,
    I::Future: Send,
    B: Send + 'static,
    R: Default,
{
    type Response = http::Response<R>;
    type Error = I::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        // The clone is the one that was not polled ready; call the ready one.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let shared = self.shared.clone();
        Box::pin(async move {
            let path = request.uri().path().to_owned();
            let Access::Needs(needed) = required_access(&path) else {
                return inner.call(request).await;
            };
            // Only a known method is named in logs and messages as sent; an
            // unknown path is the caller's text, so it is quoted in part.
            let method = match known_access(&path) {
                Some(_) => path.rsplit('/').next().unwrap_or_default().to_owned(),
                None => crate::domain::excerpt(&path),
            };
            // Before anything else: with two headers, which one counts
            // would depend on who reads them (a proxy, a log, this guard).
            if let Err(status) = one_authorization_header(request.headers()) {
                return Ok(refuse(&method, status));
            }
            let credentials = Credentials {
                authorization: request.headers().get(http::header::AUTHORIZATION).cloned(),
                certificate_subject: client_certificate_subject(&request),
            };
            let (identity, role) = match shared.authorize(credentials, needed, &method).await {
                Ok(authorized) => authorized,
                Err(status) => return Ok(refuse(&method, status)),
            };
            // Slots are counted per caller (after authentication, so that a
            // caller cannot spend another's share): the key, the
            // certificate, or for anonymous callers their address.
            let caller = Caller {
                key: if identity.0 == ANONYMOUS {
                    format!("{ANONYMOUS}@{}", peer_ip(&request))
                } else {
                    identity.0.clone()
                },
                role,
            };
            let _slot = match &shared.in_flight {
                None => None,
                Some(slots) => match slots.try_take(&caller) {
                    Ok(slot) => Some(slot),
                    Err(Refused(why)) => {
                        return Ok(refuse(&method, Status::resource_exhausted(why)));
                    }
                },
            };
            request.extensions_mut().insert(caller);
            // The handler's `rpc` span nests in this one, so every log line
            // of the call says who made it.
            let span = tracing::info_span!("caller", actor = %identity.0);
            request.extensions_mut().insert(identity);
            inner.call(request).instrument(span).await
        })
    }
}

/// The caller's IP address as its connection reports it ("unknown" where
/// none is recorded, e.g. a server run without a TCP listener).
fn peer_ip<B>(request: &http::Request<B>) -> String {
    let extensions = request.extensions();
    let addr = extensions
        .get::<TcpConnectInfo>()
        .and_then(TcpConnectInfo::remote_addr)
        .or_else(|| {
            extensions
                .get::<TlsConnectInfo<TcpConnectInfo>>()
                .and_then(|tls| tls.get_ref().remote_addr())
        });
    addr.map_or_else(|| "unknown".to_string(), |a| a.ip().to_string())
}

/// Logs a refused call (never its credentials) and turns the status into a
/// gRPC response.
fn refuse<R: Default>(method: &str, status: Status) -> http::Response<R> {
    tracing::info!(method, code = ?status.code(), error = status.message(), "rpc refused");
    crate::metrics::global().refused(method, status.code() as i32);
    status.into_http()
}

/// Refuses a request with more than one `authorization` header
/// (`UNAUTHENTICATED`), whatever they hold; the message never quotes them.
fn one_authorization_header(headers: &http::HeaderMap) -> Result<(), Status> {
    if headers
        .get_all(http::header::AUTHORIZATION)
        .iter()
        .nth(1)
        .is_some()
    {
        return Err(Status::unauthenticated(
            "more than one authorization header: send one authorization header, `Bearer <token>` with a photoclaim API key",
        ));
    }
    Ok(())
}

/// What a caller presented.
struct Credentials {
    authorization: Option<http::HeaderValue>,
    certificate_subject: Option<String>,
}

impl<S: Store> Shared<S> {
    async fn authorize(
        &self,
        credentials: Credentials,
        needed: Role,
        method: &str,
    ) -> Result<(Identity, Role), Status> {
        let (name, role) = self.authenticate(credentials).await?;
        if role < needed {
            return Err(Status::permission_denied(format!(
                "{method} needs the {} role; {name:?} has the {} role",
                needed.as_str(),
                role.as_str()
            )));
        }
        Ok((Identity(name), role))
    }

    async fn authenticate(&self, credentials: Credentials) -> Result<(String, Role), Status> {
        if let Some(value) = &credentials.authorization {
            return self.check_token(value).await;
        }
        if let Some(subject) = credentials.certificate_subject {
            return Ok((subject, self.policy.client_cert_role));
        }
        if self.policy.allow_anonymous && !self.store.has_keys().await.map_err(to_status)? {
            return Ok((ANONYMOUS.to_string(), Role::Admin));
        }
        Err(Status::unauthenticated(
            "missing credentials: send the header `authorization: Bearer <token>` with a photoclaim API key",
        ))
    }

    async fn check_token(&self, value: &http::HeaderValue) -> Result<(String, Role), Status> {
        let malformed = || {
            Status::unauthenticated(
                "authorization must be `Bearer <token>` with a photoclaim API key token (pc1_...)",
            )
        };
        let text = value.to_str().map_err(|_| malformed())?;
        let (scheme, token) = text.split_once(' ').ok_or_else(malformed)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(malformed());
        }
        let token = Token::parse(token.trim()).ok_or_else(malformed)?;
        let key = self.store.find_key(token.id).await.map_err(to_status)?;
        match key {
            Some(key) if key.matches(&token) => {
                if key.is_revoked() {
                    Err(Status::unauthenticated(format!(
                        "API key {:?} has been revoked",
                        key.name
                    )))
                } else {
                    let role = key.role();
                    Ok((key.name, role))
                }
            }
            _ => Err(Status::unauthenticated("unknown API key")),
        }
    }
}

/// The subject of the verified client certificate (e.g. `CN=wire-bot,O=Example
/// News`), when the connection is mutual TLS.
fn client_certificate_subject<B>(request: &http::Request<B>) -> Option<String> {
    let info = request
        .extensions()
        .get::<TlsConnectInfo<TcpConnectInfo>>()?;
    let certs = info.peer_certs()?;
    let leaf = certs.first()?;
    use x509_cert::der::Decode;
    let cert = x509_cert::Certificate::from_der(leaf.as_ref()).ok()?;
    let subject = cert.tbs_certificate.subject.to_string();
    (!subject.is_empty()).then_some(subject)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_rpc_needs_its_role() {
        let cases = [
            ("/grpc.health.v1.Health/Check", Access::Public),
            ("/grpc.health.v1.Health/Watch", Access::Public),
            (
                "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
                Access::Public,
            ),
            (
                "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
                Access::Public,
            ),
            (
                "/photoclaim.v1.ClaimService/GetClaim",
                Access::Needs(Role::Reader),
            ),
            (
                "/photoclaim.v1.ClaimService/ListClaims",
                Access::Needs(Role::Reader),
            ),
            (
                "/photoclaim.v1.ClaimService/ListOfficialResponses",
                Access::Needs(Role::Reader),
            ),
            (
                "/photoclaim.v1.ClaimService/GetVerificationStatus",
                Access::Needs(Role::Reader),
            ),
            (
                "/photoclaim.v1.ClaimService/ListClaimEvents",
                Access::Needs(Role::Reader),
            ),
            (
                "/photoclaim.v1.ClaimService/FindSimilarClaims",
                Access::Needs(Role::Reader),
            ),
            (
                "/photoclaim.v1.ClaimService/WatchClaimEvents",
                Access::Needs(Role::Reader),
            ),
            (
                "/photoclaim.v1.ClaimService/ExportClaimReview",
                Access::Needs(Role::Reader),
            ),
            (
                "/photoclaim.v1.ClaimService/RegisterClaim",
                Access::Needs(Role::Ingest),
            ),
            (
                "/photoclaim.v1.ClaimService/AttachOfficialResponse",
                Access::Needs(Role::Ingest),
            ),
            (
                "/photoclaim.v1.ClaimService/SetVerdict",
                Access::Needs(Role::Desk),
            ),
            (
                "/photoclaim.v1.AdminService/CreateApiKey",
                Access::Needs(Role::Admin),
            ),
            (
                "/photoclaim.v1.AdminService/ListApiKeys",
                Access::Needs(Role::Admin),
            ),
            (
                "/photoclaim.v1.AdminService/RevokeApiKey",
                Access::Needs(Role::Admin),
            ),
            (
                "/photoclaim.v1.AdminService/ExportClaims",
                Access::Needs(Role::Admin),
            ),
            (
                "/photoclaim.v1.AdminService/Backup",
                Access::Needs(Role::Admin),
            ),
            (
                "/photoclaim.v1.ClaimService/NewWriteRpc",
                Access::Needs(Role::Admin),
            ),
            (
                "/photoclaim.v1.ClaimService/SetVerdict/",
                Access::Needs(Role::Admin),
            ),
            (
                "/grpc.health.v1.Health/Check/../x",
                Access::Needs(Role::Admin),
            ),
            ("/other.Service/Method", Access::Needs(Role::Admin)),
            ("", Access::Needs(Role::Admin)),
        ];
        for (path, access) in cases {
            assert_eq!(required_access(path), access, "{path}");
        }
    }

    #[test]
    fn two_authorization_headers_are_refused_without_quoting_them() {
        let mut headers = http::HeaderMap::new();
        assert!(one_authorization_header(&headers).is_ok());
        headers.append(http::header::AUTHORIZATION, "Bearer pc1_a".parse().unwrap());
        assert!(one_authorization_header(&headers).is_ok());
        headers.append(http::header::AUTHORIZATION, "Bearer pc1_b".parse().unwrap());
        let status = one_authorization_header(&headers).unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unauthenticated);
        assert!(status.message().contains("send one authorization header"));
        assert!(!status.message().contains("pc1_"), "{}", status.message());
    }
}
