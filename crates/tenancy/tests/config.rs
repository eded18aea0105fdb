//! Loading `TenancyConfig`: defaults, YAML + environment precedence, and each kind of bad input.

// `figment::Jail` closures return `figment::Result`, whose error is large; that is its API.
#![allow(clippy::result_large_err)]

use figment::Jail;
use tenancy::{ConfigError, TenancyConfig};

fn load_in(jail: &Jail, file: Option<&str>) -> Result<TenancyConfig, ConfigError> {
    TenancyConfig::load(file.map(|f| jail.directory().join(f)).as_deref())
}

#[test]
fn defaults_without_a_file_or_environment() {
    Jail::expect_with(|jail| {
        let config = load_in(jail, None).unwrap();
        assert!(config.integration.cache_key_prefix);
        assert!(config.integration.sql_context_bridge);
        assert!(config.lifecycle.auto_provision_isolation);
        assert!(!config.lifecycle.deprovision_on_deactivate);
        assert_eq!(config.isolation.strategy, "row_level");
        assert_eq!(config.isolation.tenant_setting, "app.tenant_id");
        assert_eq!(
            config.overrides.cache_ttl,
            std::time::Duration::from_secs(60)
        );
        assert!(config.overrides.defaults.is_empty());
        assert_eq!(config.store.url, None, "in-memory store");
        let resolution = &config.resolution;
        assert_eq!(resolution.header_name, "x-tenant-id");
        assert_eq!(resolution.subdomain_base_domain, None);
        assert_eq!(resolution.path_pattern, "/tenants/{tenant}/");
        assert_eq!(resolution.jwt_claim_key, "tenant_id");
        assert_eq!(
            resolution.validator.cache_ttl,
            std::time::Duration::from_secs(300)
        );
        // jwt_claim, header, subdomain, path: subdomain joins once a base domain is set.
        use tenancy::resolution::Builtin;
        assert_eq!(
            resolution.active_resolvers(),
            [Builtin::JwtClaim, Builtin::Header, Builtin::Path]
        );
        // A file without a `tenancy` section takes every default too.
        jail.create_file("app.yaml", "server:\n  port: 8080\n")?;
        let config = load_in(jail, Some("app.yaml")).unwrap();
        assert!(config.integration.cache_key_prefix);
        Ok(())
    });
}

#[test]
fn environment_wins_over_the_file() {
    Jail::expect_with(|jail| {
        jail.create_file(
            "app.yaml",
            "tenancy:\n  integration:\n    cache_key_prefix: false\n    sql_context_bridge: false\n  \
             lifecycle:\n    auto_provision_isolation: false\n  overrides:\n    cache_ttl: 5m\n",
        )?;
        let config = load_in(jail, Some("app.yaml")).unwrap();
        assert!(!config.integration.cache_key_prefix);
        assert!(!config.integration.sql_context_bridge);
        assert_eq!(
            config.overrides.cache_ttl,
            std::time::Duration::from_secs(300)
        );

        jail.set_env("TENANCY__INTEGRATION__SQL_CONTEXT_BRIDGE", "true");
        jail.set_env("TENANCY__OVERRIDES__CACHE_TTL", "90s");
        let config = load_in(jail, Some("app.yaml")).unwrap();
        assert_eq!(
            config.overrides.cache_ttl,
            std::time::Duration::from_secs(90),
            "durations from the environment are human-readable too"
        );
        assert!(!config.integration.cache_key_prefix, "from the file");
        assert!(
            config.integration.sql_context_bridge,
            "from the environment"
        );
        Ok(())
    });
}

#[test]
fn tls_keys_load_from_the_file_and_the_environment_and_bad_ones_are_named() {
    use tenancy::pg_connect::SslMode;
    Jail::expect_with(|jail| {
        jail.create_file(
            "app.yaml",
            "tenancy:\n  store:\n    url: postgres://app@db/app\n    tls:\n      mode: verify-full\n      \
             root_cert: /etc/ssl/db-ca.pem\n  isolation:\n    tls: { mode: require }\n",
        )?;
        let config = load_in(jail, Some("app.yaml")).unwrap();
        assert_eq!(config.store.tls.mode, Some(SslMode::VerifyFull));
        assert_eq!(
            config.store.tls.root_cert.as_deref(),
            Some(std::path::Path::new("/etc/ssl/db-ca.pem"))
        );
        assert_eq!(config.isolation.tls.mode, Some(SslMode::Require));

        jail.set_env("TENANCY__STORE__TLS__MODE", "verify-ca");
        jail.set_env("TENANCY__ISOLATION__TLS__ROOT_CERT", "/etc/ssl/other.pem");
        let config = load_in(jail, Some("app.yaml")).unwrap();
        assert_eq!(config.store.tls.mode, Some(SslMode::VerifyCa));
        assert_eq!(
            config.isolation.tls.root_cert.as_deref(),
            Some(std::path::Path::new("/etc/ssl/other.pem"))
        );

        jail.set_env("TENANCY__STORE__TLS__MODE", "allow");
        let error = load_in(jail, Some("app.yaml")).unwrap_err().to_string();
        assert!(
            error.contains("tenancy.store.tls.mode") && error.contains("verify-full"),
            "{error}"
        );
        jail.set_env("TENANCY__STORE__TLS__MODE", "disable");
        let error = load_in(jail, Some("app.yaml")).unwrap_err().to_string();
        assert!(
            error.contains("store.tls.root_cert is set but store.tls.mode is disable"),
            "{error}"
        );
        Ok(())
    });
}

#[test]
fn a_named_file_that_does_not_exist_is_an_error() {
    Jail::expect_with(|jail| {
        let error = load_in(jail, Some("missing.yaml")).unwrap_err();
        let path = jail.directory().join("missing.yaml");
        assert_eq!(error, ConfigError::MissingFile { path: path.clone() });
        assert_eq!(
            error.to_string(),
            format!("configuration file {} does not exist", path.display())
        );
        Ok(())
    });
}

#[test]
fn malformed_yaml_names_the_file_and_line() {
    Jail::expect_with(|jail| {
        jail.create_file(
            "app.yaml",
            "tenancy:\n  integration:\n    cache_key_prefix: [1\n",
        )?;
        let error = load_in(jail, Some("app.yaml")).unwrap_err();
        let ConfigError::Malformed { path, message } = &error else {
            panic!("expected Malformed, got {error:?}");
        };
        assert_eq!(path, &jail.directory().join("app.yaml"));
        assert!(message.contains("line 3 column 23"), "{message}");
        assert!(
            error.to_string().contains("app.yaml is unreadable"),
            "{error}"
        );
        Ok(())
    });
}

#[test]
fn an_unknown_key_is_named() {
    Jail::expect_with(|jail| {
        jail.create_file(
            "app.yaml",
            "tenancy:\n  integration:\n    cache_key_prefx: true\n",
        )?;
        let error = load_in(jail, Some("app.yaml")).unwrap_err();
        let file = jail.directory().join("app.yaml");
        assert_eq!(
            error.to_string(),
            format!(
                "invalid configuration key `tenancy.integration.cache_key_prefx` (from file {}): \
                 unknown field: found `cache_key_prefx`, expected ``cache_key_prefix` or `sql_context_bridge``",
                file.display()
            )
        );

        jail.create_file("top.yaml", "tenancy:\n  nope: 1\n")?;
        let error = load_in(jail, Some("top.yaml")).unwrap_err();
        assert!(
            matches!(&error, ConfigError::Invalid { key, .. } if key == "tenancy.nope"),
            "{error}"
        );

        // An unknown environment variable under the prefix is an unknown key too.
        jail.set_env("TENANCY__INTEGRATON__CACHE_KEY_PREFIX", "true");
        let error = load_in(jail, None).unwrap_err();
        assert!(
            matches!(&error, ConfigError::Invalid { key, origin: Some(origin), .. }
                if key == "tenancy.integraton"
                && origin.starts_with("environment variable TENANCY__INTEGRATON")),
            "{error}"
        );
        Ok(())
    });
}

#[test]
fn a_value_of_the_wrong_type_is_named_with_its_origin() {
    Jail::expect_with(|jail| {
        jail.create_file(
            "app.yaml",
            "tenancy:\n  integration:\n    cache_key_prefix: maybe\n",
        )?;
        let error = load_in(jail, Some("app.yaml")).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "invalid configuration key `tenancy.integration.cache_key_prefix` (from file {}): \
                 invalid type: found string \"maybe\", expected a boolean",
                jail.directory().join("app.yaml").display()
            )
        );

        jail.create_file("section.yaml", "tenancy: 5\n")?;
        let error = load_in(jail, Some("section.yaml")).unwrap_err();
        assert!(
            matches!(&error, ConfigError::Invalid { key, .. } if key == "tenancy"),
            "{error}"
        );

        jail.set_env("TENANCY__INTEGRATION__SQL_CONTEXT_BRIDGE", "perhaps");
        let error = load_in(jail, None).unwrap_err();
        assert_eq!(
            error.to_string(),
            "invalid configuration key `tenancy.integration.sql_context_bridge` (from environment \
             variable TENANCY__INTEGRATION__SQL_CONTEXT_BRIDGE): invalid type: found string \
             \"perhaps\", expected a boolean"
        );
        Ok(())
    });
}

#[test]
fn loading_without_the_process_environment() {
    use figment::Figment;
    use figment::providers::{Format, Yaml};

    let figment = Figment::from(Yaml::string(
        "tenancy:\n  integration:\n    sql_context_bridge: false\nother: 1\n",
    ));
    let config = TenancyConfig::from_figment(&figment).unwrap();
    assert!(!config.integration.sql_context_bridge);
    assert!(config.integration.cache_key_prefix);
}

#[test]
fn a_section_refusing_a_value_is_named() {
    Jail::expect_with(|jail| {
        jail.create_file(
            "app.yaml",
            "tenancy:\n  isolation:\n    migrator_concurrency: 0\n",
        )?;
        let error = load_in(jail, Some("app.yaml")).unwrap_err();
        assert_eq!(
            error.to_string(),
            "invalid configuration in section `tenancy.isolation`: \
             isolation.migrator_concurrency must be at least 1"
        );
        jail.create_file("app.yaml", "tenancy:\n  overrides:\n    cache_ttl: 0s\n")?;
        let error = load_in(jail, Some("app.yaml")).unwrap_err();
        assert!(
            matches!(&error, ConfigError::Section { section: "overrides", message }
                if message.starts_with("overrides.cache_ttl")),
            "{error}"
        );
        // The isolation strategy has one setting, `isolation.strategy`.
        jail.create_file(
            "app.yaml",
            "tenancy:\n  lifecycle:\n    isolation_strategy: schema\n",
        )?;
        let error = load_in(jail, Some("app.yaml")).unwrap_err();
        assert!(
            matches!(&error, ConfigError::Invalid { key, .. } if key == "tenancy.lifecycle.isolation_strategy"),
            "{error}"
        );
        Ok(())
    });
}

#[test]
fn the_subdomain_resolver_without_a_base_domain_is_rejected() {
    Jail::expect_with(|jail| {
        jail.create_file(
            "app.yaml",
            "tenancy:\n  resolution:\n    resolvers: [header, subdomain]\n",
        )?;
        let error = load_in(jail, Some("app.yaml")).unwrap_err();
        assert_eq!(
            error.to_string(),
            "invalid configuration key `tenancy.resolution.resolvers`: lists `subdomain` but \
             `tenancy.resolution.subdomain_base_domain` is not set: set the base domain (such as \
             app.example.com) or remove `subdomain`"
        );
        // With the base domain from the environment, the same file loads.
        jail.set_env(
            "TENANCY__RESOLUTION__SUBDOMAIN_BASE_DOMAIN",
            "app.example.com",
        );
        let config = load_in(jail, Some("app.yaml")).unwrap();
        assert_eq!(
            config.resolution.active_resolvers(),
            [
                tenancy::resolution::Builtin::Header,
                tenancy::resolution::Builtin::Subdomain
            ]
        );
        Ok(())
    });
}

#[test]
fn an_unknown_resolver_is_rejected_at_load() {
    Jail::expect_with(|jail| {
        jail.set_env("TENANCY__RESOLUTION__RESOLVERS", "[header, cookie]");
        let error = load_in(jail, None).unwrap_err();
        assert!(
            matches!(&error, ConfigError::Invalid { key, message, .. }
                if key == "tenancy.resolution.resolvers.1"
                    && message.contains("found `cookie`")
                    && message.contains("`jwt_claim`, `header`, `subdomain`, `domain`, `path`")),
            "{error}"
        );
        Ok(())
    });
}

#[test]
fn the_complete_file_of_the_configuration_reference_loads() {
    let reference = include_str!("../../../docs/configuration.md");
    let section = &reference[reference.find("## A complete file").unwrap()..];
    let start = section.find("```yaml\n").unwrap() + "```yaml\n".len();
    let yaml = &section[start..start + section[start..].find("```").unwrap()];
    Jail::expect_with(|jail| {
        jail.create_file("app.yaml", yaml)?;
        let config = load_in(jail, Some("app.yaml")).unwrap();
        assert_eq!(
            config.resolution.active_resolvers(),
            tenancy::resolution::Builtin::ALL
        );
        assert_eq!(config.overrides.defaults["max_users"], 50);
        assert_eq!(
            config.store.url.as_deref(),
            Some("postgres://tenancy_app:secret@db.internal/app")
        );
        assert_eq!(
            config.store.tls.mode,
            Some(tenancy::pg_connect::SslMode::VerifyFull)
        );
        assert_eq!(
            config.isolation.citus.tenant_table.as_deref(),
            Some("items")
        );
        Ok(())
    });
}

#[test]
fn citus_keys_load_from_the_environment_and_bad_ones_are_named() {
    Jail::expect_with(|jail| {
        jail.set_env("TENANCY__ISOLATION__CITUS__ENABLED", "true");
        jail.set_env("TENANCY__ISOLATION__CITUS__TENANT_TABLE", "app.items");
        jail.set_env(
            "TENANCY__ISOLATION__CITUS__SHARD_TRANSFER_MODE",
            "block_writes",
        );
        let config = load_in(jail, None).unwrap();
        assert!(config.isolation.citus.enabled);
        assert_eq!(
            config.isolation.citus.tenant_table.as_deref(),
            Some("app.items")
        );
        assert_eq!(
            config.isolation.citus.shard_transfer_mode,
            tenancy::isolation::ShardTransferMode::BlockWrites
        );
        jail.set_env("TENANCY__ISOLATION__CITUS__SHARD_TRANSFER_MODE", "fast");
        let error = load_in(jail, None).unwrap_err();
        assert!(error.to_string().contains("shard_transfer_mode"), "{error}");
        jail.set_env("TENANCY__ISOLATION__CITUS__SHARD_TRANSFER_MODE", "auto");
        jail.set_env("TENANCY__ISOLATION__CITUS__TENANT_TABLE", "Items");
        let error = load_in(jail, None).unwrap_err();
        assert!(error.to_string().contains("citus.tenant_table"), "{error}");
        Ok(())
    });
}
