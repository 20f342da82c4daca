//! Fitting the gRPC ecosystem (issue 20, part 8): health answers for every
//! service the server serves, and the standard `google.rpc` error details
//! (AIP-193) a generic client can read without parsing messages.

mod common;

use std::time::Duration;

use common::*;
use photoclaim::pb;
use photoclaim::server::Options;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use tonic_types::StatusExt;

async fn health_client(server: &InProcess) -> HealthClient<tonic::transport::Channel> {
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .connect()
        .await
        .expect("connect");
    HealthClient::new(channel)
}

async fn check(
    health: &mut HealthClient<tonic::transport::Channel>,
    service: &str,
) -> Result<ServingStatus, tonic::Status> {
    let reply = health
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await?
        .into_inner();
    Ok(reply.status())
}

#[tokio::test]
async fn health_answers_for_the_server_and_each_served_service() {
    let server = InProcess::start().await;
    let mut health = health_client(&server).await;
    for service in [
        "",
        "photoclaim.v1.ClaimService",
        "photoclaim.v1.AdminService",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    ] {
        assert_eq!(
            check(&mut health, service).await.expect(service),
            ServingStatus::Serving,
            "{service:?}"
        );
    }
    for unknown in ["photoclaim.v1.NoSuchService", "photoclaim.v1.claimservice"] {
        let err = check(&mut health, unknown).await.unwrap_err();
        assert_eq!(err.code(), Code::NotFound, "{unknown:?}: {err:?}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_service_turns_not_serving_when_shutdown_begins() {
    // The open health watch holds the drain until the grace period ends.
    let server = InProcess::start_with(Options {
        shutdown_grace: Duration::from_millis(500),
        ..Options::default()
    })
    .await;
    let mut health = health_client(&server).await;
    let mut watch = health
        .watch(HealthCheckRequest {
            service: "photoclaim.v1.AdminService".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let first = watch.message().await.unwrap().unwrap();
    assert_eq!(first.status(), ServingStatus::Serving);
    let stopping = tokio::spawn(server.stop());
    let next = tokio::time::timeout(Duration::from_secs(30), watch.message())
        .await
        .expect("a status change in time")
        .unwrap()
        .unwrap();
    assert_eq!(next.status(), ServingStatus::NotServing);
    tokio::time::timeout(Duration::from_secs(30), stopping)
        .await
        .expect("shutdown finished")
        .unwrap();
}

#[tokio::test]
async fn a_stale_etag_is_aborted_with_error_info_naming_the_current_etag() {
    let server = InProcess::start().await;
    let mut client = server.client.clone();
    let claim = new_claim(&mut client, "Stale etags carry the current one").await;
    let stale = claim.etag.clone();
    attach(
        &mut client,
        &claim.name,
        sample_response(pb::Stance::Refutes),
        "",
    )
    .await;
    let err = client
        .set_verdict(pb::SetVerdictRequest {
            claim: claim.name.clone(),
            claim_rating: pb::ClaimRating::False as i32,
            media_authenticity: pb::MediaAuthenticity::Decontextualized as i32,
            rationale: "Refuted by the ministry.".into(),
            etag: stale.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Aborted, "{err:?}");
    let info = err.get_details_error_info().expect("ErrorInfo details");
    assert_eq!(info.reason, "ETAG_MISMATCH");
    assert_eq!(info.domain, "photoclaim");
    let current = status(&mut client, &claim.name).await.etag;
    assert_ne!(current, stale);
    assert_eq!(info.metadata.get("current_etag"), Some(&current));
    assert_eq!(info.metadata.get("claim"), Some(&claim.name));
    assert_eq!(info.metadata.len(), 2, "{:?}", info.metadata);

    // The etag from the details is good for the retry.
    let resolved = client
        .set_verdict(pb::SetVerdictRequest {
            claim: claim.name.clone(),
            claim_rating: pb::ClaimRating::False as i32,
            media_authenticity: pb::MediaAuthenticity::Decontextualized as i32,
            rationale: "Refuted by the ministry.".into(),
            etag: info.metadata["current_etag"].clone(),
        })
        .await
        .expect("retry with the current etag")
        .into_inner();
    assert_eq!(resolved.state(), pb::VerificationState::Resolved);
    server.stop().await;
}

#[tokio::test]
async fn publishing_an_unresolved_claim_is_a_precondition_failure_naming_it() {
    let server = InProcess::start().await;
    let mut client = server.client.clone();
    let claim = new_claim(&mut client, "Not reviewed yet").await;
    let err = client
        .export_claim_review(pb::ExportClaimReviewRequest {
            claim: claim.name.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    let failure = err
        .get_details_precondition_failure()
        .expect("PreconditionFailure details");
    assert_eq!(failure.violations.len(), 1, "{failure:?}");
    let violation = &failure.violations[0];
    assert_eq!(violation.r#type, "NOT_RESOLVED");
    assert_eq!(violation.subject, claim.name);
    assert!(
        violation.description.contains("UNVERIFIED"),
        "{}",
        violation.description
    );
    assert_eq!(violation.description, err.message());
    server.stop().await;
}

#[tokio::test]
async fn invalid_argument_still_carries_bad_request() {
    let server = InProcess::start().await;
    let mut client = server.client.clone();
    let mut claim = sample_claim("No language");
    claim.language.clear();
    let err = client
        .register_claim(pb::RegisterClaimRequest {
            request_id: String::new(),
            claim: Some(claim),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    let fields: Vec<String> = err
        .get_details_bad_request()
        .expect("BadRequest details")
        .field_violations
        .into_iter()
        .map(|v| v.field)
        .collect();
    assert_eq!(fields, ["claim.language"]);
    server.stop().await;
}
