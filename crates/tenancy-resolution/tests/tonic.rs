//! A tonic gRPC service behind the resolving layer, over real HTTP/2 on loopback: the handler sees
//! the tenant (extensions and task-local context), and refusals reach the client as gRPC statuses.

mod common;

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use common::CountingStore;
use futures_util::future::BoxFuture;
use http::uri::PathAndQuery;
use tenancy_core::{TenantStatus, context};
use tenancy_resolution::{
    Builtin, GrpcRejection, MembershipMode, ResolutionConfig, ResolveTenantLayer, ResolvedTenant,
    TenantValidator,
};
use tonic::body::Body;
use tonic::server::{NamedService, UnaryService};
use tonic::transport::{Channel, Server, server::TcpIncoming};
use tonic::{Code, Request, Response, Status};
use tonic_prost::ProstCodec;

/// The request of `Whoami`: empty.
#[derive(Clone, PartialEq, prost::Message)]
struct WhoamiRequest {}

/// The answer: the tenant's slug as the extensions and the task-local context see it.
#[derive(Clone, PartialEq, prost::Message)]
struct WhoamiReply {
    #[prost(string, tag = "1")]
    slug: String,
    #[prost(string, tag = "2")]
    context_slug: String,
}

/// `tenancy.test.Tenants/Whoami`, written out as tonic's generated code would be.
#[derive(Debug, Clone, Copy)]
struct TenantsServer;

impl NamedService for TenantsServer {
    const NAME: &'static str = "tenancy.test.Tenants";
}

struct Whoami;

impl UnaryService<WhoamiRequest> for Whoami {
    type Response = WhoamiReply;
    type Future = BoxFuture<'static, Result<Response<WhoamiReply>, Status>>;

    fn call(&mut self, request: Request<WhoamiRequest>) -> Self::Future {
        let slug = request
            .extensions()
            .get::<ResolvedTenant>()
            .map(|tenant| tenant.slug.to_string());
        let context_slug = context::current().map(|c| c.tenant().slug.to_string());
        Box::pin(async move {
            Ok(Response::new(WhoamiReply {
                slug: slug.ok_or_else(|| Status::internal("no tenant in the extensions"))?,
                context_slug: context_slug.unwrap_or_default(),
            }))
        })
    }
}

impl tower_service::Service<http::Request<Body>> for TenantsServer {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<http::Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        Box::pin(async move {
            let mut grpc =
                tonic::server::Grpc::new(ProstCodec::<WhoamiReply, WhoamiRequest>::default());
            Ok(grpc.unary(Whoami, request).await)
        })
    }
}

async fn whoami(channel: &Channel, tenant: &str) -> Result<WhoamiReply, Status> {
    let mut client = tonic::client::Grpc::new(channel.clone());
    client
        .ready()
        .await
        .map_err(|e| Status::unknown(e.to_string()))?;
    let mut request = Request::new(WhoamiRequest {});
    request
        .metadata_mut()
        .insert("x-tenant-id", tenant.parse().unwrap());
    let path = PathAndQuery::from_static("/tenancy.test.Tenants/Whoami");
    let codec = ProstCodec::<WhoamiRequest, WhoamiReply>::default();
    Ok(client.unary(request, path, codec).await?.into_inner())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tonic_service_behind_the_layer_sees_its_tenant_and_refusals_are_grpc_statuses() {
    let store = CountingStore::new();
    let acme = store.tenant("acme", TenantStatus::Active).await;
    let banned = store.tenant("banned", TenantStatus::Suspended).await;
    let config = ResolutionConfig {
        resolvers: Some(vec![Builtin::Header]),
        membership: MembershipMode::Off,
        ..ResolutionConfig::default()
    };
    let validator = TenantValidator::new(Arc::clone(&store) as _, &config.validator).unwrap();
    let layer = ResolveTenantLayer::new(&config, validator)
        .unwrap()
        .require_tenant()
        .rejection(GrpcRejection);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let server = tokio::spawn(
        Server::builder()
            .layer(layer)
            .add_service(TenantsServer)
            .serve_with_incoming(TcpIncoming::from(listener)),
    );
    let channel = Channel::from_shared(format!("http://{address}"))
        .unwrap()
        .connect()
        .await
        .unwrap();

    // Twice: a cache miss (awaited path), then a hit (synchronous path).
    for _ in 0..2 {
        let reply = whoami(&channel, &acme.id.to_string()).await.unwrap();
        assert_eq!(reply.slug, "acme");
        assert_eq!(reply.context_slug, "acme");
    }
    for (tenant, message) in [
        (banned.id.to_string(), "tenant_suspended"),
        (
            tenancy_core::TenantId::new().to_string(),
            "tenant_not_found",
        ),
        ("not-a-uuid".to_owned(), "tenant_required"),
    ] {
        let status = whoami(&channel, &tenant).await.unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "{tenant}");
        assert_eq!(status.message(), message, "{tenant}");
    }
    store.set_failing(true);
    let cold = tenancy_core::TenantId::new().to_string();
    let status = whoami(&channel, &cold).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    server.abort();
}
