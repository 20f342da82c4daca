//! Similarity: claims on the same image by the `claims_by_sha256` table,
//! near duplicates by the in-memory PDQ indexes.

use std::sync::{Arc, PoisonError};

use super::derived::PdqIndexes;
use super::Core;
use crate::domain::pdq::{Pdq, Transformation};
use crate::domain::{Claim, Error, Result};
use crate::store::engine::{span, Engine};
use crate::store::schema::{is_reliable, sha_index_key, sha_key, stored_quality, u64_at, Table};
use crate::store::{Similar, SimilarQuery, MAX_SAME_IMAGE_CLAIMS};

impl<E: Engine> Core<E> {
    /// Ids of the claims on the image with this SHA-256 below `before`,
    /// newest first, at most `limit`: a reverse range read over the index
    /// prefix, which reads only the entries it returns.
    fn exact_ids(&self, sha: &[u8; 32], before: u64, limit: usize) -> Result<Vec<u64>> {
        let range = span(&sha_index_key(sha, 0), &sha_index_key(sha, before));
        self.engine
            .scan(Table::ClaimsBySha256, range, true)
            .take(limit)
            .map(|entry| {
                let (key, _) = entry.map_err(|e| e.at("claims_by_sha256"))?;
                Ok(u64_at(key.as_ref(), 32))
            })
            .collect()
    }

    /// Claims registered before `claim` on the same image or a near
    /// duplicate of it (reliable hashes only), nearest first, then newest.
    pub(crate) async fn same_image(
        &self,
        claim: &Claim,
        near_distance: u32,
        dihedral: bool,
        variants: Option<[Pdq; 8]>,
    ) -> Result<Vec<Similar>> {
        let Some(image) = &claim.image else {
            return Ok(Vec::new());
        };
        let reliable = is_reliable(stored_quality(image));
        self.similar(&SimilarQuery {
            sha256: (!image.sha256.is_empty()).then(|| image.sha256.clone()),
            pdq: Pdq::from_hex(&image.pdq).filter(|_| reliable),
            max_distance: near_distance,
            include_low_quality: false,
            before: Some(claim.id),
            limit: MAX_SAME_IMAGE_CLAIMS,
            dihedral,
            variants,
        })
        .await
    }

    /// Runs `f` on the PDQ indexes: off the async runtime (a query over a
    /// million hashes takes a fraction of a millisecond; readers run side
    /// by side), or right here when the indexes are small
    /// ([`super::INLINE_SEARCH_MAX_HASHES`]) and no writer holds them, so
    /// the task never waits for the lock.
    async fn read_indexes<T: Send + 'static>(
        &self,
        f: impl FnOnce(&PdqIndexes) -> T + Send + 'static,
    ) -> Result<T> {
        self.pdq_index_ready().await?;
        if self.derived.shared {
            super::follow::catch_up_index(&*self.engine, &self.derived.pdq_index)?;
        }
        if let Ok(guard) = self.derived.pdq_index.try_read() {
            if guard.len() <= self.inline_search_max_hashes {
                return Ok(f(&guard));
            }
        }
        let indexes = Arc::clone(&self.derived.pdq_index);
        tokio::task::spawn_blocking(move || {
            let guard = indexes.read().unwrap_or_else(PoisonError::into_inner);
            f(&guard)
        })
        .await
        .map_err(|e| Error::Internal(format!("PDQ index task failed: {e}")))
    }

    /// Claims matching `query`, nearest first, then newest.
    pub(super) async fn similar(&self, query: &SimilarQuery) -> Result<Vec<Similar>> {
        let before = query.before.unwrap_or(u64::MAX);
        let sha = query.sha256.as_deref().and_then(sha_key);
        // id -> distance; exact matches first at distance 0.
        let mut found: std::collections::HashMap<u64, u32> = std::collections::HashMap::new();
        let mut exact_views = Vec::new();
        if let Some(sha) = &sha {
            let ids = self.exact_ids(sha, before, query.limit)?;
            for (&id, view) in ids.iter().zip(self.cached_claims(&ids)?) {
                found.insert(id, 0);
                exact_views.extend(view);
            }
        }
        // Searching by SHA-256 alone: near duplicates of that image's hash.
        let pdq = query.pdq.or_else(|| {
            exact_views.iter().find_map(|v| {
                let image = v.view().claim.image.as_ref()?;
                let usable = query.include_low_quality || is_reliable(stored_quality(image));
                Pdq::from_hex(&image.pdq).filter(|_| usable)
            })
        });
        let (radius, low_quality) = (query.max_distance, query.include_low_quality);
        // The hashes searched: the query's, and with `dihedral` its seven
        // rotations and reflections (exact when given, else estimated).
        let queries: Vec<Pdq> = match (pdq, query.dihedral) {
            (None, _) => Vec::new(),
            (Some(pdq), false) => vec![pdq],
            (Some(pdq), true) => match query.variants {
                Some(v) if query.pdq == Some(pdq) => v.to_vec(),
                _ => pdq.variants().to_vec(),
            },
        };
        let search = move |indexes: &PdqIndexes| {
            if let [one] = queries.as_slice() {
                let mut hits: Vec<(u64, u32, usize)> = indexes
                    .reliable
                    .query(one, radius)
                    .into_iter()
                    .map(|(id, d)| (id, d, 0))
                    .collect();
                if low_quality {
                    let low = indexes.low_quality.query(one, radius);
                    hits.extend(low.into_iter().map(|(id, d)| (id, d, 0)));
                }
                return hits;
            }
            let mut hits = indexes.reliable.query_variants(&queries, radius);
            if low_quality {
                hits.extend(indexes.low_quality.query_variants(&queries, radius));
            }
            hits
        };
        let hits = match pdq {
            Some(_) => self.read_indexes(search).await?,
            None => Vec::new(),
        };
        // id -> variant index of the nearest hit.
        let mut turned: std::collections::HashMap<u64, usize> = std::collections::HashMap::new();
        for (id, distance, variant) in hits {
            if id < before {
                let entry = found.entry(id).or_insert(u32::MAX);
                if distance < *entry {
                    *entry = distance;
                    if variant == 0 {
                        turned.remove(&id);
                    } else {
                        turned.insert(id, variant);
                    }
                }
            }
        }
        let rank = |&(id, distance): &(u64, u32)| (distance, std::cmp::Reverse(id));
        let mut ranked: Vec<(u64, u32)> = found.into_iter().collect();
        if ranked.len() > query.limit && query.limit > 0 {
            // Only the best `limit` are read: partition, then sort those.
            ranked.select_nth_unstable_by_key(query.limit - 1, rank);
            ranked.truncate(query.limit);
        }
        ranked.sort_by_key(rank);
        ranked.truncate(query.limit);
        let ids: Vec<u64> = ranked.iter().map(|&(id, _)| id).collect();
        let claims = self.cached_claims(&ids)?;
        let mut out = Vec::new();
        for ((_, distance), claim) in ranked.into_iter().zip(claims) {
            if let Some(claim) = claim {
                let exact = query.sha256.as_deref().is_some_and(|s| {
                    let image = claim.view().claim.image.as_ref();
                    image.is_some_and(|i| i.sha256 == s)
                });
                let transformation = match turned.get(&claim.view().claim.id) {
                    Some(&v) if !exact => Transformation::ALL[v],
                    _ => Transformation::Identity,
                };
                out.push(Similar {
                    claim,
                    exact,
                    distance,
                    transformation,
                });
            }
        }
        Ok(out)
    }
}
