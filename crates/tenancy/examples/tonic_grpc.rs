//! A tonic gRPC service behind the tenancy layer: the handler sees its tenant, and a call without
//! an active tenant is refused with a gRPC status (`PERMISSION_DENIED`, message
//! `tenant_suspended`...) rather than an HTTP error.
//!
//! ```sh
//! cargo run -p tenancy --example tonic_grpc
//! ```
//!
//! The service is written out by hand (prost messages and the service as tonic's code generator
//! would write them), so the example needs no `protoc` or `build.rs`; with generated code the
//! server is wired the same way: `Server::builder().layer(layer).add_service(...)`.
//!
//! It serves on a free port of 127.0.0.1, calls itself as a client, prints what each call got and
//! checks it; it exits non-zero when an answer is not the expected one.

use std::convert::Infallible;
use std::task::{Context, Poll};

use futures_util::future::BoxFuture;
use http::uri::PathAndQuery;
use tenancy::ResolvedTenant;
use tenancy::core::CreateTenant;
use tenancy::resolution::GrpcRejection;
use tonic::body::Body;
use tonic::server::{NamedService, UnaryService};
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Server};
use tonic::{Code, Request, Response, Status};
use tonic_prost::ProstCodec;

// package tenancy.example;
// service Tenants { rpc Whoami(WhoamiRequest) returns (WhoamiReply); }
// message WhoamiRequest {}
// message WhoamiReply { string slug = 1; string name = 2; }

#[derive(Clone, PartialEq, prost::Message)]
struct WhoamiRequest {}

#[derive(Clone, PartialEq, prost::Message)]
struct WhoamiReply {
    #[prost(string, tag = "1")]
    slug: String,
    #[prost(string, tag = "2")]
    name: String,
}

/// The method's implementation.
struct Whoami;

impl UnaryService<WhoamiRequest> for Whoami {
    type Response = WhoamiReply;
    type Future = BoxFuture<'static, Result<Response<WhoamiReply>, Status>>;

    fn call(&mut self, request: Request<WhoamiRequest>) -> Self::Future {
        // The layer put the tenant in the request's extensions, and in the task-local context
        // (`tenancy::context::current()`) for code further down.
        let tenant = request.extensions().get::<ResolvedTenant>().cloned();
        Box::pin(async move {
            // With `require_tenant()` on the layer, a call only gets here with an active tenant.
            let tenant = tenant.ok_or_else(|| Status::internal("no tenant"))?;
            Ok(Response::new(WhoamiReply {
                slug: tenant.tenant().slug.to_string(),
                name: tenant.tenant().name.clone(),
            }))
        })
    }
}

/// The service `tenancy.example.Tenants`, routing its one method to [`Whoami`].
#[derive(Debug, Clone, Copy)]
struct TenantsServer;

impl NamedService for TenantsServer {
    const NAME: &'static str = "tenancy.example.Tenants";
}

impl tower::Service<http::Request<Body>> for TenantsServer {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<http::Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        Box::pin(async move {
            let codec = ProstCodec::<WhoamiReply, WhoamiRequest>::default();
            Ok(tonic::server::Grpc::new(codec).unary(Whoami, request).await)
        })
    }
}

/// Calls `Whoami` with `x-tenant-id: tenant` in the call's metadata.
async fn whoami(channel: &Channel, tenant: &str) -> Result<WhoamiReply, Status> {
    let mut client = tonic::client::Grpc::new(channel.clone());
    client
        .ready()
        .await
        .map_err(|e| Status::unknown(e.to_string()))?;
    let mut request = Request::new(WhoamiRequest {});
    let value = tenant
        .parse()
        .map_err(|_| Status::invalid_argument("tenant"))?;
    request.metadata_mut().insert("x-tenant-id", value);
    let path = PathAndQuery::from_static("/tenancy.example.Tenants/Whoami");
    let codec = ProstCodec::<WhoamiRequest, WhoamiReply>::default();
    Ok(client.unary(request, path, codec).await?.into_inner())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Tenants are named by the `x-tenant-id` metadata (an HTTP/2 header). The service has no user
    // accounts, so there is no membership to check (docs/security.md).
    let mut config = tenancy::TenancyConfig::default();
    config.resolution.resolvers = Some(vec![tenancy::resolution::Builtin::Header]);
    config.resolution.membership = tenancy::MembershipMode::Off;
    let tenancy = tenancy::configure(config).await?;
    let lifecycle = tenancy.lifecycle();
    let acme = lifecycle
        .create(CreateTenant::new("acme".parse()?, "Acme"))
        .await?
        .into_result()?;
    let initech = lifecycle
        .create(CreateTenant::new("initech".parse()?, "Initech"))
        .await?
        .into_result()?;
    lifecycle.suspend(initech.id, None).await?.into_result()?;

    // Every call needs an active tenant: the layer refuses the others itself, as gRPC statuses.
    let layer = tenancy.layer().require_tenant().rejection(GrpcRejection);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    tokio::spawn(
        Server::builder()
            .layer(layer)
            .add_service(TenantsServer)
            .serve_with_incoming(TcpIncoming::from(listener)),
    );

    let channel = Channel::from_shared(format!("http://{address}"))?
        .connect()
        .await?;
    let reply = whoami(&channel, &acme.id.to_string()).await?;
    println!("Whoami as acme -> {reply:?}");
    assert_eq!((reply.slug.as_str(), reply.name.as_str()), ("acme", "Acme"));

    for (who, tenant, message) in [
        (
            "initech (suspended)",
            initech.id.to_string(),
            "tenant_suspended",
        ),
        (
            "an unknown tenant",
            tenancy::TenantId::new().to_string(),
            "tenant_not_found",
        ),
        (
            "no valid tenant id",
            "not-a-uuid".to_owned(),
            "tenant_required",
        ),
    ] {
        let Err(status) = whoami(&channel, &tenant).await else {
            return Err(format!("the call as {who} must be refused").into());
        };
        println!(
            "Whoami as {who} -> {:?} {}",
            status.code(),
            status.message()
        );
        assert_eq!(
            (status.code(), status.message()),
            (Code::PermissionDenied, message)
        );
    }

    tenancy.shutdown().await?;
    println!("tonic_grpc: every answer was the expected one");
    Ok(())
}
