//! [`ChangeFeed`]: listens on the change channel and invalidates every registered cache.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use sqlx::postgres::{PgConnectOptions, PgListener, PgNotification, PgPool, PgPoolOptions};
use tenancy_core::{CacheInvalidation, Health, Invalidators, TenantError};
use tenancy_pg_connect::{ConnectError, connect_error};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::config::Identifier;
use crate::notice::ChangeNotice;

/// Settings of a [`ChangeFeed`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedSettings {
    /// The channel to listen on (the store's `notify_channel`).
    pub channel: String,
    /// The `application_name` of the listening connection, to find it in `pg_stat_activity`.
    pub application_name: String,
    /// The first delay before reconnecting; doubled after each failed attempt.
    pub min_backoff: Duration,
    /// The longest delay between reconnection attempts.
    pub max_backoff: Duration,
}

impl FeedSettings {
    /// Defaults for `channel`: application name `tenancy-change-feed`, backoff 100 ms to 10 s.
    #[must_use]
    pub fn new(channel: impl Into<String>) -> Self {
        Self {
            channel: channel.into(),
            application_name: "tenancy-change-feed".to_owned(),
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
        }
    }
}

#[derive(Debug)]
struct FeedState {
    health: Health,
    reconnects: u64,
    notices: u64,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<FeedState>,
    metrics: FeedMetrics,
}

/// The feed's metrics (feature `metrics`), registered when it starts: recording is then an
/// atomic operation on a handle.
#[derive(Debug)]
struct FeedMetrics {
    #[cfg(feature = "metrics")]
    notices: metrics::Counter,
    #[cfg(feature = "metrics")]
    reconnects: metrics::Counter,
    #[cfg(feature = "metrics")]
    lag: metrics::Histogram,
}

impl FeedMetrics {
    fn register() -> Self {
        #[cfg(feature = "metrics")]
        {
            use crate::telemetry::{
                CHANGE_FEED_LAG_SECONDS, CHANGE_FEED_NOTICES_TOTAL, CHANGE_FEED_RECONNECTS_TOTAL,
            };
            Self {
                notices: metrics::counter!(CHANGE_FEED_NOTICES_TOTAL),
                reconnects: metrics::counter!(CHANGE_FEED_RECONNECTS_TOTAL),
                lag: metrics::histogram!(CHANGE_FEED_LAG_SECONDS),
            }
        }
        #[cfg(not(feature = "metrics"))]
        Self {}
    }

    /// A notice applied, `lag` after it was sent (when it says when).
    fn applied(&self, lag: Option<Duration>) {
        #[cfg(feature = "metrics")]
        {
            self.notices.increment(1);
            if let Some(lag) = lag {
                self.lag.record(lag);
            }
        }
        #[cfg(not(feature = "metrics"))]
        let _ = lag;
    }

    fn reconnected(&self) {
        #[cfg(feature = "metrics")]
        self.reconnects.increment(1);
    }
}

impl Shared {
    fn update(&self, f: impl FnOnce(&mut FeedState)) {
        f(&mut self.state.lock().unwrap_or_else(PoisonError::into_inner));
    }

    fn read<R>(&self, f: impl FnOnce(&FeedState) -> R) -> R {
        f(&self.state.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// The cross-process cache invalidation of the PostgreSQL store.
///
/// A task holds a dedicated connection that `LISTEN`s on the change channel; for every
/// [`ChangeNotice`] it calls [`invalidate_tenant`](CacheInvalidation::invalidate_tenant) (and
/// [`invalidate_slug`](CacheInvalidation::invalidate_slug) and
/// [`invalidate_domain`](CacheInvalidation::invalidate_domain) for the slugs and domains it names) on the
/// [`Invalidators`]. Notifications sent while it is disconnected are lost, so when the connection
/// is lost it flushes every cache ([`invalidate_all`](CacheInvalidation::invalidate_all)), and once
/// it listens again it flushes them again. It reconnects with exponential backoff.
///
/// Health: healthy while listening, degraded while reconnecting. Stop it with
/// [`shutdown`](Self::shutdown), which cancels the task and waits for it (dropping the feed
/// cancels the task too).
///
/// A SQLite store is single-process and has no feed: in-process invalidation through the
/// lifecycle service is enough there.
#[derive(Debug)]
pub struct ChangeFeed {
    shared: Arc<Shared>,
    cancel: CancellationToken,
    /// The listening task, until [`shutdown`](Self::shutdown) takes it to wait for it.
    task: Mutex<Option<JoinHandle<()>>>,
    pool: PgPool,
}

impl ChangeFeed {
    /// Connects with `options` (a dedicated connection named `settings.application_name`),
    /// listens on `settings.channel`, flushes `invalidators` once, and spawns the feed task.
    ///
    /// # Errors
    /// [`TenantError::Configuration`] for an invalid channel name, [`TenantError::Storage`] when
    /// the first connection or `LISTEN` fails (later failures are retried by the task).
    pub async fn start(
        options: PgConnectOptions,
        settings: FeedSettings,
        invalidators: Invalidators,
    ) -> Result<Self, TenantError> {
        Identifier::new("store.notify_channel", &settings.channel)?;
        let options = options.application_name(&settings.application_name);
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .min_connections(0)
            .max_lifetime(None)
            .idle_timeout(None)
            .connect_lazy_with(options);
        let listener = listen(&pool, &settings.channel)
            .await
            .map_err(|e| TenantError::storage(format!("starting the change feed: {e}"), e))?;
        invalidators.invalidate_all().await;
        info!(channel = %settings.channel, "change feed listening");
        let shared = Arc::new(Shared {
            state: Mutex::new(FeedState {
                health: listening_health(&settings.channel),
                reconnects: 0,
                notices: 0,
            }),
            metrics: FeedMetrics::register(),
        });
        let cancel = CancellationToken::new();
        let task = tokio::spawn(run(
            listener,
            pool.clone(),
            settings,
            invalidators,
            Arc::clone(&shared),
            cancel.clone(),
        ));
        Ok(Self {
            shared,
            cancel,
            task: Mutex::new(Some(task)),
            pool,
        })
    }

    /// Healthy while listening, degraded while reconnecting (with the reason), unhealthy once
    /// stopped.
    #[must_use]
    pub fn health(&self) -> Health {
        self.shared.read(|s| s.health.clone())
    }

    /// How many times the feed has reconnected after losing its connection.
    #[must_use]
    pub fn reconnects(&self) -> u64 {
        self.shared.read(|s| s.reconnects)
    }

    /// How many change notices it has applied.
    #[must_use]
    pub fn notices(&self) -> u64 {
        self.shared.read(|s| s.notices)
    }

    /// Cancels the task, waits for it to end, and closes its connection. Calling it again does
    /// nothing.
    pub async fn shutdown(&self) {
        self.cancel.cancel();
        let task = self
            .task
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(task) = task {
            if let Err(e) = task.await {
                warn!(error = %e, "change feed task failed");
            }
            self.pool.close().await;
        }
    }
}

impl Drop for ChangeFeed {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

fn listening_health(channel: &str) -> Health {
    Health::healthy().with_detail("channel", channel)
}

/// A listener on `channel`; a failure says whether TLS is what failed.
async fn listen(pool: &PgPool, channel: &str) -> Result<PgListener, ConnectError> {
    let listening = async {
        let mut listener = PgListener::connect_with(pool).await?;
        // This task reconnects itself, so that it knows when it happened and can flush caches.
        listener.eager_reconnect(false);
        listener.ignore_pool_close_event(false);
        listener.listen(channel).await?;
        Ok(listener)
    };
    listening
        .await
        .map_err(|e| connect_error(&pool.connect_options(), e))
}

/// Why the listening loop ended.
enum Ended {
    Stopped,
    Lost(String),
}

async fn run(
    mut listener: PgListener,
    pool: PgPool,
    settings: FeedSettings,
    invalidators: Invalidators,
    shared: Arc<Shared>,
    cancel: CancellationToken,
) {
    loop {
        let reason = match receive(&mut listener, &invalidators, &shared, &cancel).await {
            Ended::Stopped => break,
            Ended::Lost(reason) => reason,
        };
        drop(listener);
        warn!(channel = %settings.channel, %reason, "change feed lost its connection; flushing caches and reconnecting");
        // Flushed before the health says so: whoever sees "reconnecting" sees empty caches.
        invalidators.invalidate_all().await;
        shared.update(|s| {
            s.health = Health::degraded(format!("reconnecting: {reason}"))
                .with_detail("channel", &settings.channel);
        });
        listener = match reconnect(&pool, &settings, &shared, &cancel).await {
            Some(listener) => listener,
            None => break,
        };
        // Listening again: whatever changed while away is flushed; later changes are notified.
        invalidators.invalidate_all().await;
        shared.update(|s| {
            s.reconnects += 1;
            s.health = listening_health(&settings.channel);
        });
        shared.metrics.reconnected();
        info!(channel = %settings.channel, "change feed reconnected");
    }
    shared.update(|s| s.health = Health::unhealthy("change feed stopped"));
    debug!(channel = %settings.channel, "change feed stopped");
}

async fn receive(
    listener: &mut PgListener,
    invalidators: &Invalidators,
    shared: &Shared,
    cancel: &CancellationToken,
) -> Ended {
    loop {
        let received = tokio::select! {
            () = cancel.cancelled() => return Ended::Stopped,
            received = listener.try_recv() => received,
        };
        match received {
            Ok(Some(notification)) => {
                let sent = apply(&notification, invalidators).await;
                shared.update(|s| s.notices += 1);
                shared
                    .metrics
                    .applied(sent.and_then(|notice| notice.age(SystemTime::now())));
            }
            Ok(None) => return Ended::Lost("connection closed".to_owned()),
            Err(e) => return Ended::Lost(e.to_string()),
        }
    }
}

/// Applies the notice; returns it when it could be read.
async fn apply(notification: &PgNotification, invalidators: &Invalidators) -> Option<ChangeNotice> {
    match serde_json::from_str::<ChangeNotice>(notification.payload()) {
        Ok(notice) => {
            debug!(tenant_id = %notice.tenant_id, kind = ?notice.kind, "change notice");
            invalidators.invalidate_tenant(notice.tenant_id).await;
            for domain in &notice.domains {
                invalidators.invalidate_domain(domain).await;
            }
            for slug in &notice.slugs {
                invalidators.invalidate_slug(slug).await;
            }
            Some(notice)
        }
        Err(e) => {
            warn!(payload = notification.payload(), error = %e, "unreadable change notice; flushing every cache");
            invalidators.invalidate_all().await;
            None
        }
    }
}

/// Reconnects with exponential backoff; `None` when cancelled meanwhile.
async fn reconnect(
    pool: &PgPool,
    settings: &FeedSettings,
    shared: &Shared,
    cancel: &CancellationToken,
) -> Option<PgListener> {
    let mut delay = settings.min_backoff;
    loop {
        cancel
            .run_until_cancelled(tokio::time::sleep(delay))
            .await?;
        match cancel
            .run_until_cancelled(listen(pool, &settings.channel))
            .await?
        {
            Ok(listener) => return Some(listener),
            Err(e) => {
                warn!(channel = %settings.channel, error = %e, retry_in = ?delay, "change feed could not reconnect");
                shared.update(|s| {
                    s.health = Health::degraded(format!("reconnecting: {e}"))
                        .with_detail("channel", &settings.channel);
                });
                delay = (delay * 2).min(settings.max_backoff);
            }
        }
    }
}
