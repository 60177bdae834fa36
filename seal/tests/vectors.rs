//! Test vectors from docs/FORMAT.md, checked against the implementation.

use sealant_seal::{Frame, Identity, Scope, Target, UnsealError, unseal};

const IDENTITY: &str = "AGE-SECRET-KEY-1FXCS7CLD0CFDSAVSCF9VHX6238X3HYCWYYSDENAJDQ0F2RF3J3FS5JD02F";
const RECIPIENT: &str = "age1qckwrc90yedvd0393lufgy89rdvlv3qvtkk9q6de2erztcj9pudqne0en4";
const FINGERPRINT: &str = "df07f000fb173b54";
const HERE: Target<'static> = Target {
    namespace: "prod",
    name: "db",
    key: "password",
};
const FRAMES: [(Scope, &str); 3] = [
    (
        Scope::Strict,
        "534c4e540100000470726f6400026462000870617373776f726468756e74657232",
    ),
    (Scope::NamespaceWide, "534c4e540101000470726f6468756e74657232"),
    (Scope::ClusterWide, "534c4e54010268756e74657232"),
];
const SEALED: [(Scope, &str); 3] = [
    (
        Scope::Strict,
        "YWdlLWVuY3J5cHRpb24ub3JnL3YxCi0+IFgyNTUxOSBPVWZ3b0R2Vy96SUNkV0VtU3pZRitjWGpucDVISHFoS2ZNa1JOZnJRcndNClQvclRESUE2c2RBN3BjNUtsWnJNeFQzY09yc3dyczZmQUZBYVg1UHl2TlUKLT4gQj0tZ3JlYXNlIFdeO1VOJgpaZGU1eENPU3RYQXpGQlUwS2t3OGlJNnlvQUx5V2N1UysyWkRxOHhCc0pzLzhocVV1dVRUWjJhZ3laUEJaWVlTCjdHYU1wK0M1V2h0UQotLS0ga0NkTldNNXZSNHU0VHRIcXk2QjN6WmRQK203SkxPOG9QWkw0VFNuSjk1WQqUdeNwcLMEUsKu/qGfNW1jT51P/2noTkU84rfvSROU0V2lOkolIT82iBQ5YE4ShWU56z9t3kotG4M+Ht38yDBhYw==",
    ),
    (
        Scope::NamespaceWide,
        "YWdlLWVuY3J5cHRpb24ub3JnL3YxCi0+IFgyNTUxOSBsREpkQ1BCSGUrVzFHaUpQMG96Y0llQUt2K1FzUWlodC9HOWdmSVhTRVdZClEvL1J3RDJ2dFQrS0t5NlpnUlZnOEhXZVo2TzRPaEx3dG1KdzVoczBQZXcKLT4gT289LWdyZWFzZSBrTjE0XDktIDhkVjtsayBuRWE2UUBUCnpBRnRiQ0lKaFRiSUVXbWpzbjAKLS0tIHNxK250Y0xjY2kwb0cxNDhHQTl4MXFSb0k4ZnE4a2h3bW9IbTFQVmhLTjQK8MCzMd7LjXgU5lGRH8Is6VqXm83rFNwrzwMhkJ+0XW50EOzOGmmL0Jv5f2m7gF+aPR2/",
    ),
    (
        Scope::ClusterWide,
        "YWdlLWVuY3J5cHRpb24ub3JnL3YxCi0+IFgyNTUxOSBOM2RaNUJMMTVycG1TdVdOMjAzK2RSeWVmN1VHMElUNFg2ZVBBSTRRY1NnCk1Dc3pWdlR6WkJ0UHNGZFdZamlFQUFzSjhRRGNVYm0vejJISm1PMkk4aVkKLT4gY18qeTQtZ3JlYXNlCmJhTHBGZlMvZDlZeHRrajhKQUJ5ZHV3emFrUE80N0pnNWJuazdXK3R4di9BdDMzZ2RNVEZRV2pBaFF3ekRyWmgKWkRmd2NWZjVuN2o4L0JkZmRQSjBOYk5NbkFtZHdDUzlrOVdpdWZGb0VpMWdLRTJGaStTMUt2bzMzSXFFSFBWawpXQXcKLS0tIGcyVFM1bjFYQjMzNGRnSGZpREhGcDhzRU94ak1oZEJOSllaRHE3T2RnOEUKfwLz4sXFKupNka+LQqIDQRoaQon1tIlhzkSbC3OV17dJxTU+sEN41BIjcTm0",
    ),
];

fn identity() -> Identity {
    IDENTITY.parse().unwrap()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn keys_and_fingerprint() {
    let id = identity();
    assert_eq!(id.recipient().to_string(), RECIPIENT);
    assert_eq!(id.fingerprint().as_str(), FINGERPRINT);
}

#[test]
fn frames_encode_to_the_documented_bytes() {
    for (scope, frame) in FRAMES {
        assert_eq!(
            hex(&Frame::encode(scope, &HERE, b"hunter2").unwrap()),
            frame,
            "{scope}"
        );
    }
}

#[test]
fn sealed_vectors_open() {
    let id = identity();
    for (scope, sealed) in SEALED {
        let opened = unseal([&id], &HERE, sealed).unwrap();
        assert_eq!(opened.scope, scope);
        assert_eq!(opened.value.as_bytes(), b"hunter2");
    }
}

#[test]
fn sealed_vectors_respect_their_scope() {
    let id = identity();
    let elsewhere_ns = Target {
        namespace: "dev",
        ..HERE
    };
    let other_object = Target {
        name: "cache",
        key: "token",
        ..HERE
    };
    assert!(matches!(
        unseal([&id], &elsewhere_ns, SEALED[0].1),
        Err(UnsealError::ScopeMismatch { .. })
    ));
    unseal([&id], &other_object, SEALED[1].1).unwrap();
    assert!(matches!(
        unseal([&id], &elsewhere_ns, SEALED[1].1),
        Err(UnsealError::ScopeMismatch { .. })
    ));
    unseal([&id], &elsewhere_ns, SEALED[2].1).unwrap();
}

#[test]
fn format_doc_shows_these_vectors() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/FORMAT.md")).unwrap();
    let mut expected = vec![IDENTITY, RECIPIENT, FINGERPRINT];
    expected.extend(FRAMES.iter().map(|(_, f)| *f));
    expected.extend(SEALED.iter().map(|(_, s)| *s));
    for v in expected {
        assert!(doc.contains(v), "docs/FORMAT.md no longer shows {v}");
    }
}
