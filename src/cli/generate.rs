//! `photoclaim generate`: fills a data directory with realistic synthetic
//! claims for scale tests, through the same store operations the server
//! uses (so hash chains, indexes and the event log are exactly what live
//! writes make), many at a time so that flushes are shared.
//!
//! What it writes, deterministically for a given `--seed`:
//! - claims in six languages (en, fr, es, ru, ar, uk), with claimant,
//!   appearance URL, tags and an image (source URL, credit, SHA-256, PDQ);
//! - images in clusters: one cluster per ~20 claims, each claim's PDQ hash
//!   0-12 bits from its cluster's centre, and one claim in ten on the exact
//!   image (same SHA-256) of an earlier claim of its cluster;
//! - 1-5 official responses per claim (mixed responders, kinds, stances;
//!   some in reply to an earlier one);
//! - a verdict on half of the claims.

use std::sync::Arc;
use std::time::Instant;

use crate::domain::pdq::Pdq;
use crate::domain::{
    Claim, Image, MediaAuthenticity, OfficialResponse, Responder, ResponderRole, ResponseKind,
    Stance, Timestamp, Verdict,
};
use crate::store::{NewClaim, NewResponse, NewVerdict, Store};

/// Claims written concurrently (their flushes are shared).
const IN_FLIGHT: u64 = 64;

/// What `generate` wrote.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Generated {
    /// Claims.
    pub claims: u64,
    /// Responses.
    pub responses: u64,
    /// Verdicts.
    pub verdicts: u64,
    /// Seconds it took.
    pub seconds: f64,
}

/// splitmix64: a small seedable generator; claim `i`'s values depend only
/// on the seed and `i`, whatever the order the tasks run in. Also the load
/// generator's ([`crate::cli::bench`]).
#[derive(Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    /// Stream `stream` of `seed`.
    pub(crate) fn new(seed: u64, stream: u64) -> Self {
        Rng(seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform-ish in `0..n` (0 when `n` is 0).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    pub(crate) fn bytes(&mut self) -> [u8; 32] {
        let mut out = [0u8; 32];
        for chunk in out.chunks_mut(8) {
            chunk.copy_from_slice(&self.next().to_le_bytes());
        }
        out
    }
}

const LANGUAGES: [(&str, &str); 6] = [
    ("en", "These photos show peacekeepers deployed in"),
    ("fr", "Ces photos montrent des casques bleus déployés à"),
    ("es", "Estas fotos muestran cascos azules desplegados en"),
    ("ru", "На этих фото миротворцы ООН в"),
    ("ar", "تظهر هذه الصور قوات حفظ السلام في"),
    ("uk", "На цих фото миротворці ООН у"),
];
const PLACES: [&str; 8] = [
    "Almaty", "Bamako", "Goma", "Juba", "Kabul", "Mariupol", "Naqoura", "Tbilisi",
];
const ORGANIZATIONS: [(&str, ResponderRole); 5] = [
    ("United Nations", ResponderRole::InternationalOrganization),
    ("Ministry of Defence", ResponderRole::Government),
    ("Permanent Mission to the UN", ResponderRole::Government),
    ("Open-source investigator", ResponderRole::IndependentExpert),
    ("Wire agency", ResponderRole::Company),
];
const STANCES: [Stance; 4] = [
    Stance::Refutes,
    Stance::Supports,
    Stance::AddsContext,
    Stance::NoPosition,
];
const KINDS: [ResponseKind; 4] = [
    ResponseKind::Statement,
    ResponseKind::Inquiry,
    ResponseKind::ExpertOpinion,
    ResponseKind::NoComment,
];

/// The PDQ centre and the first claim's SHA-256 of cluster `c`.
fn cluster(seed: u64, c: u64) -> ([u8; 32], [u8; 32]) {
    let mut rng = Rng::new(seed, u64::MAX - c);
    (rng.bytes(), rng.bytes())
}

/// Claim `i` (from 0) of the data set.
fn claim(seed: u64, i: u64, rng: &mut Rng) -> Claim {
    let (language, text) = *rng.pick(&LANGUAGES);
    let place = rng.pick(&PLACES);
    let c = i / 20;
    let (centre, first_sha) = cluster(seed, c);
    let mut pdq = centre;
    for _ in 0..rng.below(13) {
        let bit = rng.below(256) as usize;
        pdq[bit / 8] ^= 1 << (bit % 8);
    }
    let sha = if !i.is_multiple_of(20) && rng.below(10) == 0 {
        first_sha
    } else {
        rng.bytes()
    };
    // Spread over 2022-2026, one claim every few minutes.
    let seen = Timestamp {
        seconds: 1_640_995_200 + (i * 157) as i64 % 157_680_000,
        nanos: 0,
    };
    Claim {
        claim_text: format!("{text} {place} (#{i})"),
        claimant: format!("account-{}", rng.below(5000)),
        language: language.into(),
        appearance_urls: vec![format!("https://social.example/post/{}", rng.next())],
        tags: vec![format!("cluster-{c}"), (*place).to_string()],
        first_seen_time: Some(seen),
        image: Some(Image {
            source_url: format!("https://photos.example/{c}/{i}.jpg"),
            sha256: hex::encode(sha),
            credit: "Wire agency".into(),
            publisher: "Example Photos".into(),
            location: (*place).to_string(),
            caption: format!("Troops in {place}"),
            pdq: Pdq(pdq).to_hex(),
            pdq_quality: 60 + rng.below(41) as i32,
            pdq_quality_known: true,
            width: 1600,
            height: 1067,
            format: "jpeg".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn response(rng: &mut Rng, index: u64, language: &str) -> OfficialResponse {
    let (organization, role) = *rng.pick(&ORGANIZATIONS);
    OfficialResponse {
        responder: Some(Responder {
            organization: organization.into(),
            person: String::new(),
            role: role as i32,
        }),
        kind: *rng.pick(&KINDS) as i32,
        stance: *rng.pick(&STANCES) as i32,
        text: format!("Statement {index} from {organization} on the photographs."),
        language: language.into(),
        source_url: format!("https://statements.example/{}", rng.next()),
        in_reply_to: if index > 1 && rng.below(4) == 0 {
            1 + rng.below(index - 1)
        } else {
            0
        },
        ..Default::default()
    }
}

/// Writes claim `i` with its responses and maybe a verdict: (responses, verdicts).
async fn write_claim<S: Store>(store: &S, seed: u64, i: u64) -> crate::domain::Result<(u64, u64)> {
    let mut rng = Rng::new(seed, i);
    let draft = claim(seed, i, &mut rng);
    let language = draft.language.clone();
    let registered = store
        .register_claim(NewClaim {
            claim: draft,
            request_id: format!("generate-{seed}-{i}"),
            actor: "generator".into(),
            near_distance: 0,
            dihedral: false,
            variants: None,
        })
        .await?;
    let id = registered.claim.claim.id;
    let count = 1 + rng.below(5);
    for index in 1..=count {
        store
            .attach_response(NewResponse {
                claim_id: id,
                response: response(&mut rng, index, &language),
                request_id: format!("generate-{seed}-{i}-{index}"),
                actor: "generator".into(),
            })
            .await?;
    }
    let verdicts = if i.is_multiple_of(2) {
        store
            .set_verdict(NewVerdict {
                claim_id: id,
                verdict: Verdict {
                    claim_rating: (1 + rng.below(5)) as i32,
                    media_authenticity: *rng.pick(&[
                        MediaAuthenticity::Original,
                        MediaAuthenticity::Decontextualized,
                        MediaAuthenticity::EditedOrCropped,
                    ]) as i32,
                    rationale: format!("Checked against the {} statements.", count),
                    ..Default::default()
                },
                etag: None,
                actor: "generator".into(),
            })
            .await?;
        1
    } else {
        0
    };
    Ok((count, verdicts))
}

/// Adds `claims` claims to `store`, `IN_FLIGHT` at a time, reporting
/// progress through `progress(done)` every 100 claims.
pub async fn generate<S: Store>(
    store: Arc<S>,
    claims: u64,
    seed: u64,
    progress: impl Fn(u64),
) -> crate::domain::Result<Generated> {
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let mut next = 0u64;
    let mut done = Generated {
        claims: 0,
        responses: 0,
        verdicts: 0,
        seconds: 0.0,
    };
    while next < claims.min(IN_FLIGHT) {
        let store = store.clone();
        tasks.spawn(async move { write_claim(&*store, seed, next).await });
        next += 1;
    }
    while let Some(result) = tasks.join_next().await {
        let (responses, verdicts) = result
            .map_err(|e| crate::domain::Error::Internal(format!("generator task: {e}")))??;
        done.claims += 1;
        done.responses += responses;
        done.verdicts += verdicts;
        if done.claims.is_multiple_of(100) {
            progress(done.claims);
        }
        if next < claims {
            let store = store.clone();
            let i = next;
            tasks.spawn(async move { write_claim(&*store, seed, i).await });
            next += 1;
        }
    }
    done.seconds = started.elapsed().as_secs_f64();
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_cluster_and_share_images_deterministically() {
        let a = claim(7, 3, &mut Rng::new(7, 3));
        let b = claim(7, 3, &mut Rng::new(7, 3));
        assert_eq!(a, b, "same seed and index, same claim");
        let pdq = |c: &Claim| Pdq::from_hex(&c.image.as_ref().unwrap().pdq).unwrap();
        let (centre, _) = cluster(7, 0);
        for i in 0..20 {
            let c = claim(7, i, &mut Rng::new(7, i));
            assert!(pdq(&c).distance(&Pdq(centre)) <= 12, "claim {i}");
        }
        let other = claim(7, 25, &mut Rng::new(7, 25));
        assert!(pdq(&other).distance(&Pdq(centre)) > 40, "another cluster");
        let shared = (1..400)
            .filter(|&i| {
                let c = claim(7, i, &mut Rng::new(7, i));
                c.image.unwrap().sha256 == hex::encode(cluster(7, i / 20).1)
            })
            .count();
        assert!((10..80).contains(&shared), "{shared} exact repeats of 399");
    }
}
