//! The crowd's refusals, answered before the router.
//!
//! At a sell-out nearly every claim is refused from memory: a million
//! people come for twenty thousand vouchers. Through the router, each such
//! refusal paid for the whole middleware chain (the overload layers, the
//! metrics and request-id layer, routing with its boxed services, the
//! guard, the extractors), a third more than `GET /healthz` pays for all of
//! its work (BENCHMARKS.md, twelfth pass). [`Api::answer`] takes a claim
//! first: it authenticates it, reads and checks its body as the route
//! does, and when memory refuses it ([`Engine::claim_refused`]) answers
//! that refusal itself. Anything else goes on to the router unchanged,
//! carrying the [`Principal`] it was authenticated as (so that it is
//! authenticated, and counted against its tenant's rate, once).
//!
//! Every answer given here is the one the router gives the same request:
//! each step is the route's own function ([`auth::admitted`],
//! [`extract::optional_json`], [`Principal::acting_user`],
//! [`refusal_problem`]), in the route's order, and the answer is counted
//! under the route's name and carries the request's id as the router's
//! would. A request whose body is not all there at once, or that asks for
//! something this does not answer (an `Idempotency-Key`, a declared body
//! past the route's limit), is the router's. A refusal is answered even
//! past `--requests-in-flight-max`: it holds nothing and waits for nothing.

use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Instant;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::request::Parts;
use axum::http::{Method, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use hyper::body::Body as _;
use tower::{BoxError, ServiceExt};
use voucherd_core::ids::CampaignId;

use crate::AppState;
use crate::auth::{self, Principal};
use crate::extract;
use crate::idempotency::IDEMPOTENCY_KEY;
use crate::observe::{self, HttpMetrics, REQUEST_ID};
use crate::problem::Problem;
use crate::routes::claims::refusal_problem;
use crate::wire::UserBody;

/// The claim route's pattern, as the router names it in the metrics.
pub(crate) const CLAIM_ROUTE: &str = "/v1/campaigns/{id}/claims";

/// The whole service: the crowd's refusals, then the router.
#[derive(Clone, Debug)]
pub struct Api {
    front: Arc<Front>,
    router: Router,
}

#[derive(Debug)]
struct Front {
    app: AppState,
    metrics: Arc<HttpMetrics>,
    /// The claim route's body limit.
    body_bytes_max: usize,
}

/// What the front made of a claim.
enum Taken {
    /// Answered here.
    Answered(Problem),
    /// The router's to answer, as the principal it was authenticated as
    /// (the guard does not authenticate it again), with its body.
    Passed(Principal, Body),
}

impl Api {
    pub(crate) fn new(
        app: AppState,
        metrics: Arc<HttpMetrics>,
        body_bytes_max: usize,
        router: Router,
    ) -> Api {
        Api {
            front: Arc::new(Front {
                app,
                metrics,
                body_bytes_max,
            }),
            router,
        }
    }

    /// Answers one request.
    pub async fn answer<B>(&self, request: Request<B>) -> Response
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let request = request.map(Body::new);
        let request = match claimed_campaign(&request, self.front.body_bytes_max) {
            Some(campaign_id) => match self.front.claim(request, campaign_id).await {
                Ok(refused) => return refused,
                Err(passed) => passed,
            },
            None => request,
        };
        match self.router.clone().oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        }
    }
}

/// The campaign a request claims on, when it is a claim the front may
/// take: `POST /v1/campaigns/{id}/claims` with an id as the route parses
/// it (no percent-encoding to decode), no `Idempotency-Key`, and no body
/// declared past the route's limit.
fn claimed_campaign(request: &Request, body_bytes_max: usize) -> Option<CampaignId> {
    if request.method() != Method::POST {
        return None;
    }
    let id = request
        .uri()
        .path()
        .strip_prefix("/v1/campaigns/")?
        .strip_suffix("/claims")?;
    if id.contains(['/', '%']) {
        return None;
    }
    let headers = request.headers();
    if headers.contains_key(IDEMPOTENCY_KEY) {
        return None;
    }
    if let Some(declared) = headers.get(header::CONTENT_LENGTH) {
        let declared: u64 = declared.to_str().ok()?.parse().ok()?;
        if declared > body_bytes_max as u64 {
            return None;
        }
    }
    id.parse().ok()
}

impl Front {
    /// A claim answered with memory's refusal or with what refuses the
    /// request before it; else the request for the router.
    async fn claim(&self, request: Request, campaign_id: CampaignId) -> Result<Response, Request> {
        let started = Instant::now();
        let _serving = self.metrics.serving();
        let (parts, body) = request.into_parts();
        match self.take(&parts, body, campaign_id).await {
            Taken::Passed(principal, body) => {
                let mut request = Request::from_parts(parts, body);
                request.extensions_mut().insert(principal);
                Err(request)
            }
            Taken::Answered(problem) => {
                let id = observe::request_id(&parts.headers);
                let mut response = REQUEST_ID.sync_scope(id.clone(), || problem.into_response());
                // As axum's routes do.
                if let Some(length) = response.body().size_hint().exact() {
                    response
                        .headers_mut()
                        .insert(header::CONTENT_LENGTH, length.into());
                }
                let status = response.status();
                // The front refuses; it never carries anything out, nor fails.
                assert!(status.is_client_error(), "the front answered {status}");
                let span = if tracing::enabled!(tracing::Level::DEBUG) {
                    tracing::warn_span!("request", id = %id)
                } else {
                    tracing::Span::none()
                };
                span.in_scope(|| {
                    self.metrics
                        .record("POST", CLAIM_ROUTE, status, started.elapsed())
                });
                Ok(observe::named(response, &id))
            }
        }
    }

    /// The route's steps up to the engine, in its order (the guard's
    /// authentication, the body's media type, the body, the acting user),
    /// then memory's refusal.
    async fn take(&self, parts: &Parts, mut body: Body, campaign_id: CampaignId) -> Taken {
        let principal = match auth::admitted(&self.app, &parts.headers) {
            Ok(principal) => principal,
            Err(refused) => return Taken::Answered(refused),
        };
        if let Err(refused) = extract::optional_json_type(&parts.headers) {
            return Taken::Answered(refused);
        }
        // One look at the body: a claim's few bytes came with its head. A
        // body still on its way is the router's, which waits for it under
        // the request timeout.
        let first =
            std::future::poll_fn(|context| Poll::Ready(Pin::new(&mut body).poll_frame(context)))
                .await;
        let bytes = match first {
            Poll::Pending => return Taken::Passed(principal, body),
            Poll::Ready(None) => Bytes::new(),
            Poll::Ready(Some(Err(error))) => {
                return Taken::Answered(Problem::malformed(format!(
                    "Failed to buffer the request body: {error}"
                )));
            }
            Poll::Ready(Some(Ok(frame))) => {
                let data = frame.into_data().unwrap_or_default();
                if !body.is_end_stream() {
                    let rest = futures::stream::once(async move { Ok(data) })
                        .chain(body.into_data_stream());
                    return Taken::Passed(principal, Body::from_stream(rest));
                }
                data
            }
        };
        let typed = parts.headers.contains_key(header::CONTENT_TYPE);
        let user: UserBody = match extract::optional_json(typed, &bytes) {
            Ok(user) => user,
            Err(refused) => return Taken::Answered(refused),
        };
        if let Err(refused) = principal.acting_user(user.user_id.as_deref()) {
            return Taken::Answered(refused);
        }
        match self
            .app
            .engine
            .claim_refused(principal.tenant_id(), campaign_id)
        {
            Some(refusal) => Taken::Answered(refusal_problem(refusal)),
            None => Taken::Passed(principal, Body::from(bytes)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0193a3c4-5e6f-7a8b-9c0d-1e2f3a4b5c6d";

    fn claim(path: &str) -> axum::http::request::Builder {
        Request::builder().method(Method::POST).uri(path)
    }

    fn taken(request: axum::http::request::Builder) -> Option<CampaignId> {
        claimed_campaign(&request.body(Body::empty()).unwrap(), 1024)
    }

    #[test]
    fn the_front_takes_only_plain_claims() {
        let path = format!("/v1/campaigns/{ID}/claims");
        assert_eq!(taken(claim(&path)), Some(ID.parse().unwrap()));
        assert_eq!(
            taken(claim(&format!("{path}?from=banner"))),
            Some(ID.parse().unwrap())
        );
        assert_eq!(
            taken(claim(&path).header(header::CONTENT_LENGTH, "1024")),
            Some(ID.parse().unwrap())
        );
        assert_eq!(
            taken(claim(&path).header(header::CONTENT_LENGTH, "1025")),
            None
        );
        assert_eq!(
            taken(claim(&path).header(header::CONTENT_LENGTH, "many")),
            None
        );
        assert_eq!(taken(claim(&path).header(IDEMPOTENCY_KEY, "k-1")), None);
        assert_eq!(
            taken(Request::builder().method(Method::GET).uri(&path)),
            None
        );
        assert_eq!(taken(claim(&format!("{path}/"))), None);
        assert_eq!(taken(claim("/v1/campaigns/not-an-id/claims")), None);
        assert_eq!(taken(claim(&format!("/v1/campaigns/{ID}/x/claims"))), None);
        assert_eq!(taken(claim(&format!("/v2/campaigns/{ID}/claims"))), None);
    }

    #[test]
    fn a_percent_encoded_id_is_the_routers() {
        let encoded = format!("/v1/campaigns/%30{}/claims", &ID[1..]);
        assert_eq!(taken(claim(&encoded)), None);
    }

    #[test]
    fn the_claim_route_is_named_as_the_router_names_it() {
        let document = crate::openapi();
        let path = document
            .paths
            .paths
            .get(CLAIM_ROUTE)
            .expect("the claim route");
        assert!(path.post.is_some());
    }
}
