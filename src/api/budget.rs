//! The budget on request bodies held at once (`--max-inflight-bytes`). A request is charged
//! before its body is read: the length it declares, or its route's body limit when it declares
//! none (chunked), since that is the most it may send. Past the budget it gets 429 at once, so
//! memory follows the budget, not the number of clients. The charge is returned when the
//! request is answered.

use super::error::ApiError;
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use tokio::sync::Semaphore;

/// The unit of the budget: KiB, so that one charge (a `u32` of them) may reach 4 TiB.
const UNIT: usize = 1024;

/// Request bytes the server may hold at once, shared by every inference route.
#[derive(Clone)]
pub struct ByteBudget {
    units: Arc<Semaphore>,
    total: usize,
}

impl ByteBudget {
    pub fn new(bytes: usize) -> Self {
        let units = bytes.div_ceil(UNIT).min(Semaphore::MAX_PERMITS);
        ByteBudget {
            units: Arc::new(Semaphore::new(units)),
            total: units * UNIT,
        }
    }

    /// The budget in bytes.
    pub fn total(&self) -> usize {
        self.total
    }

    /// Bytes charged to requests now.
    pub fn held(&self) -> usize {
        self.total - self.units.available_permits() * UNIT
    }

    /// The middleware state for a route whose bodies may reach `limit` bytes.
    pub fn route(&self, limit: usize) -> RouteBudget {
        RouteBudget {
            budget: self.clone(),
            limit,
        }
    }
}

/// [`ByteBudget`] with the body limit of the route it guards.
#[derive(Clone)]
pub struct RouteBudget {
    budget: ByteBudget,
    limit: usize,
}

/// Charges the request its declared length (capped at the route's limit, which refuses larger
/// bodies anyway) or the limit itself, holds the charge while it is handled, and answers 429
/// without reading the body when the budget cannot take it.
pub async fn charge(State(route): State<RouteBudget>, request: Request, next: Next) -> Response {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let bytes = declared.unwrap_or(route.limit).min(route.limit);
    let units = u32::try_from(bytes.div_ceil(UNIT)).unwrap_or(u32::MAX);
    let Ok(_held) = route.budget.units.clone().try_acquire_many_owned(units) else {
        return ApiError::Overloaded(format!(
            "the server holds as many request bytes as --max-inflight-bytes allows ({} MiB); this request would add {} MiB{}; retry shortly",
            route.budget.total >> 20,
            bytes.div_ceil(1 << 20),
            if declared.is_some() { "" } else { " (no Content-Length: charged the route's body limit)" },
        ))
        .into_response();
    };
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_are_counted_in_whole_units_and_returned() {
        let budget = ByteBudget::new(10 * UNIT);
        let first = budget.units.clone().try_acquire_many_owned(4).unwrap();
        assert_eq!(budget.held(), 4 * UNIT);
        assert!(budget.units.clone().try_acquire_many_owned(7).is_err());
        drop(first);
        assert_eq!(budget.held(), 0);
        assert!(budget.units.clone().try_acquire_many_owned(10).is_ok());
    }
}
