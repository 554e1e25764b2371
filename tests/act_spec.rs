//! Parsing activation specs as users write them in ultralytics YAML and on the command line.

use actyolo::act::zoo::lookup;
use actyolo::act::zoo::ACTIVATIONS;
use actyolo::act::{catalog::catalogue, ActArg, ActSpec, SpecError};

fn parse(s: &str) -> ActSpec {
    ActSpec::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn bad_argument(s: &str) -> (String, String) {
    match ActSpec::parse(s) {
        Err(SpecError::BadArgument {
            argument, message, ..
        }) => (argument, message),
        Err(SpecError::BadValue {
            argument, reason, ..
        }) => (argument.to_string(), reason.to_string()),
        other => panic!("{s}: expected a bad-argument error, got {other:?}"),
    }
}

/// The canonical spec each written one parses to (every argument, defaults filled in).
fn canonical(s: &str) -> String {
    parse(s).to_string()
}

#[test]
fn ultralytics_and_cli_spellings() {
    let leaky = |s| format!("nn.LeakyReLU(negative_slope={s})");
    assert_eq!(canonical("nn.LeakyReLU(0.1)"), leaky("0.1"));
    assert_eq!(canonical("nn.LeakyReLU(negative_slope=0.1)"), leaky("0.1"));
    assert_eq!(
        canonical("torch.nn.LeakyReLU(0.1, inplace=True)"),
        leaky("0.1")
    );
    assert_eq!(canonical("nn.LeakyReLU(0.1, True)"), leaky("0.1"));
    for s in [
        "LeakyReLU",
        "leaky_relu",
        "leakyrelu",
        "LEAKYRELU",
        "nn.LeakyReLU()",
        "NN.leakyRelu()",
    ] {
        assert_eq!(canonical(s), leaky("0.01"), "{s}");
    }
    for (written, expected) in [
        (
            "nn.Hardtanh(-2, 2)",
            "nn.Hardtanh(min_val=-2.0, max_val=2.0)",
        ),
        ("nn.GELU(approximate='tanh')", "nn.GELU(approximate='tanh')"),
        (
            "nn.GELU(approximate=\"none\")",
            "nn.GELU(approximate='none')",
        ),
        (
            "nn.Softplus(beta=2, threshold=10)",
            "nn.Softplus(beta=2.0, threshold=10.0)",
        ),
        (
            "nn.PReLU(num_parameters=1, init=0.25)",
            "nn.PReLU(num_parameters=1, init=0.25)",
        ),
        ("FReLU", "FReLU(k=3)"),
        ("AconC", "AconC()"),
        ("MetaAconC(r=16)", "MetaAconC(r=16)"),
        ("MetaAconC(8)", "MetaAconC(r=8)"),
        ("nn.Identity()", "nn.Identity()"),
        ("nn.SiLU(inplace=True)", "nn.SiLU()"),
        ("swish", "nn.SiLU()"),
        ("nn.Softmax()", "nn.Softmax(dim=1)"),
        ("nn.Softmax(dim=None)", "nn.Softmax(dim=1)"),
        (
            "nn.RReLU()",
            "nn.RReLU(lower=0.125, upper=0.3333333333333333)",
        ),
        ("  nn.ELU( alpha = 0.5 )  ", "nn.ELU(alpha=0.5)"),
        ("nn.ELU(1e-1)", "nn.ELU(alpha=0.1)"),
        ("swish_beta(2)", "SwishBeta(beta=2.0)"),
    ] {
        assert_eq!(canonical(written), expected, "{written}");
    }
}

#[test]
fn conv_act_argument_true_and_false() {
    assert_eq!(ActArg::parse("True").unwrap(), ActArg::Default);
    assert_eq!(
        ActArg::parse("False").unwrap(),
        ActArg::Spec(ActSpec::identity())
    );
    assert_eq!(
        ActArg::parse("nn.ReLU()").unwrap(),
        ActArg::Spec(parse("relu"))
    );
    // `True` alone is no activation: it means "the model's default" inside a Conv row.
    assert!(matches!(
        ActSpec::parse("True"),
        Err(SpecError::Syntax { .. })
    ));
}

#[test]
fn display_is_canonical_and_round_trips() {
    assert_eq!(
        parse("leaky_relu").to_string(),
        "nn.LeakyReLU(negative_slope=0.01)"
    );
    assert_eq!(
        parse("nn.Hardtanh(-2, 2)").to_string(),
        "nn.Hardtanh(min_val=-2.0, max_val=2.0)"
    );
    assert_eq!(parse("gelu").to_string(), "nn.GELU(approximate='none')");
    assert_eq!(parse("silu").to_string(), "nn.SiLU()");
    assert_eq!(parse("metaaconc").to_string(), "MetaAconC(r=16)");
    assert_eq!(
        parse("nn.PReLU()").to_string(),
        "nn.PReLU(num_parameters=1, init=0.25)"
    );
    let mut specs: Vec<ActSpec> = ACTIVATIONS.iter().map(|&d| ActSpec::of(d)).collect();
    specs.extend(
        [
            "nn.Softplus(beta=2, threshold=10)",
            "nn.GELU(approximate='tanh')",
            "nn.RReLU(0.1, 0.3)",
            "nn.Softmax(dim=-3)",
            "FReLU(k=5)",
        ]
        .map(parse),
    );
    for spec in specs {
        assert_eq!(parse(&spec.to_string()), spec, "{spec}");
    }
}

#[test]
fn catalogue_lists_all_32_once() {
    let entries = catalogue();
    assert_eq!(entries.len(), 32);
    let mut names: Vec<_> = entries.iter().map(|e| e.name.to_lowercase()).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 32, "duplicate names");
    for &def in ACTIVATIONS {
        assert!(std::ptr::eq(lookup(def.name).unwrap(), def), "{}", def.name);
        for alias in def.aliases {
            assert!(std::ptr::eq(lookup(alias).unwrap(), def), "{alias}");
        }
    }
}

#[test]
fn unknown_name_suggests_the_closest() {
    for (typo, expected) in [
        ("leaky_rel", "LeakyReLU"),
        ("hardswsh", "Hardswish"),
        ("nn.Mesh()", "Mish"),
        ("SILU6", "SiLU"),
    ] {
        match ActSpec::parse(typo) {
            Err(e @ SpecError::UnknownName { .. }) => {
                let SpecError::UnknownName { suggestions, .. } = &e else {
                    unreachable!()
                };
                assert!(
                    suggestions.iter().any(|s| s == expected),
                    "{typo}: {suggestions:?}"
                );
                assert!(e.to_string().contains(expected), "{e}");
            }
            other => panic!("{typo}: {other:?}"),
        }
    }
}

#[test]
fn bad_arguments_name_the_argument_and_what_is_allowed() {
    let (arg, msg) = bad_argument("nn.ELU(alpa=1.0)");
    assert_eq!(arg, "alpa");
    assert!(msg.contains("alpha=1.0"), "{msg}");

    let (arg, msg) = bad_argument("nn.LeakyReLU('a')");
    assert_eq!(arg, "negative_slope");
    assert!(msg.contains("a number"), "{msg}");
    assert_eq!(
        bad_argument("nn.PReLU(num_parameters=1.5)").0,
        "num_parameters"
    );
    assert_eq!(bad_argument("nn.ReLU(inplace=1)").0, "inplace");

    for s in [
        "nn.Hardtanh(2, 1)",
        "nn.Hardtanh(1, 1)",
        "nn.Hardtanh(min_val=0.5, max_val=-0.5)",
    ] {
        assert_eq!(bad_argument(s).0, "max_val", "{s}");
    }
    let (arg, msg) = bad_argument("nn.Softshrink(-0.5)");
    assert_eq!(arg, "lambd");
    assert!(msg.contains(">= 0"), "{msg}");
    assert_eq!(bad_argument("nn.RReLU(0.5, 0.1)").0, "lower");
    assert_eq!(bad_argument("nn.Softplus(beta=0)").0, "beta");
    assert_eq!(bad_argument("nn.CELU(0)").0, "alpha");
    let (arg, msg) = bad_argument("nn.GELU(approximate='fast')");
    assert_eq!(arg, "approximate");
    assert!(msg.contains("'none'") && msg.contains("'tanh'"), "{msg}");
    assert_eq!(bad_argument("nn.GLU(dim=2)").0, "dim");
    assert_eq!(bad_argument("nn.Softmax(dim=7)").0, "dim");
    assert_eq!(
        bad_argument("nn.PReLU(num_parameters=0)").0,
        "num_parameters"
    );
    assert_eq!(bad_argument("FReLU(k=2)").0, "k");
    assert_eq!(bad_argument("MetaAconC(r=0)").0, "r");
    assert_eq!(bad_argument("SwishBeta(beta=0)").0, "beta");
    let (arg, msg) = bad_argument("nn.LeakyReLU(1e400)");
    assert_eq!(arg, "negative_slope");
    assert!(msg.contains("not a finite number"), "{msg}");
    assert!(bad_argument("nn.ReLU(True, 1)").1.contains("too many"));
    assert_eq!(bad_argument("nn.ELU(1.0, alpha=2.0)").0, "alpha");
    assert!(bad_argument("nn.ELU(alpha=1.0, True)")
        .1
        .contains("positional"));
    assert!(bad_argument("nn.Sigmoid(1)").1.contains("no arguments"));
}

#[test]
fn nothing_is_evaluated() {
    for s in [
        "__import__('os').system('ls')",
        "nn.LeakyReLU(0.1 + 0.2)",
        "nn.LeakyReLU(math.pi)",
        "nn.ReLU(",
        "nn.ReLU)",
        "nn.ELU(,)",
        "nn.GELU(approximate='tanh)",
        "",
        "nn.ELU(inf)",
    ] {
        let err = ActSpec::parse(s).expect_err(s);
        assert!(
            matches!(
                err,
                SpecError::Syntax { .. } | SpecError::UnknownName { .. }
            ),
            "{s}: {err:?}"
        );
    }
}

#[test]
fn lists_split_at_top_level_commas_only() {
    let specs =
        actyolo::act::spec::parse_list("silu, nn.Hardtanh(-2, 2),nn.GELU(approximate='tanh'),relu")
            .unwrap();
    assert_eq!(
        specs.iter().map(ActSpec::to_string).collect::<Vec<_>>(),
        [
            "nn.SiLU()",
            "nn.Hardtanh(min_val=-2.0, max_val=2.0)",
            "nn.GELU(approximate='tanh')",
            "nn.ReLU()"
        ]
    );
    assert!(actyolo::act::spec::parse_list("silu,,relu").is_err());
}
