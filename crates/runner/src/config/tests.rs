//! The config file: keys, defaults, overrides and their errors.

use super::*;

fn write(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("coppice-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

const MINIMAL: &str = "name = \"t\"\n[model]\nkind = \"mlp\"\n";

fn load_err(name: &str, text: &str, overrides: &[&str]) -> String {
    let overrides: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
    let err = Config::load(&write(name, text), &overrides).expect_err("config must be rejected");
    let message = err.to_string();
    assert!(!message.contains('\n'), "one line: {message}");
    assert!(message.contains(name), "names the file: {message}");
    message
}

#[test]
fn defaults_fill_an_almost_empty_config() {
    let config = Config::load(&write("minimal.toml", MINIMAL), &[]).unwrap();
    assert_eq!(config.seed, 42);
    assert_eq!(config.train, TrainConfig::default());
    assert_eq!(config.data.dir, PathBuf::from("datasets/mnist"));
}

#[test]
fn unknown_key_is_named_with_its_section() {
    let message = load_err("unknown.toml", &format!("{MINIMAL}[train]\nlrr = 0.1\n"), &[]);
    assert!(message.contains("train") && message.contains("lrr"), "{message}");
    assert!(message.contains("fix"), "{message}");
}

#[test]
fn negative_learning_rate_is_rejected() {
    let message = load_err("neg-lr.toml", &format!("{MINIMAL}[train]\nlr = -0.1\n"), &[]);
    assert!(message.contains("train.lr"), "{message}");
}

#[test]
fn batch_size_zero_is_rejected() {
    let message = load_err("bs0.toml", MINIMAL, &["train.batch_size=0"]);
    assert!(message.contains("train.batch_size"), "{message}");
}

#[test]
fn unknown_backend_is_rejected() {
    let message = load_err("backend.toml", &format!("backend = \"tpu\"\n{MINIMAL}"), &[]);
    assert!(message.contains("backend") && message.contains("tpu"), "{message}");
}

#[test]
fn syntax_errors_give_the_line() {
    let message = load_err("syntax.toml", "name = \"t\"\n[model\n", &[]);
    assert!(message.contains("line 2"), "{message}");
}

#[test]
fn overrides_set_nested_keys_and_strings() {
    let overrides = vec!["train.lr=0.2".to_string(), "model.hidden=[10]".into(), "name=other".into()];
    let config = Config::load(&write("override.toml", MINIMAL), &overrides).unwrap();
    assert_eq!(config.train.lr, 0.2);
    assert_eq!(config.model.hidden, Some(vec![10]));
    assert_eq!(config.name, "other");
}

#[test]
fn a_list_where_a_value_belongs_points_to_sweep() {
    let message = load_err("list.toml", &format!("seed = [1, 2]\n{MINIMAL}"), &[]);
    assert!(message.contains("seed") && message.contains("coppice sweep"), "{message}");
}

#[test]
fn keys_of_another_model_kind_are_rejected() {
    let message = load_err("misplaced.toml", &format!("{MINIMAL}conv1 = 6\n"), &[]);
    assert!(message.contains("model.conv1"), "{message}");
}

#[test]
fn resolved_config_round_trips() {
    let config = Config::load(&write("roundtrip.toml", MINIMAL), &[]).unwrap();
    let text = toml::to_string(&config).unwrap();
    let path = write("resolved.toml", &text);
    assert_eq!(Config::load(&path, &[]).unwrap(), config);
}

/// Every key serde accepts, read from its own "expected one of" list so that a new field cannot
/// slip past, is in docs/config.md.
#[test]
fn every_key_the_config_accepts_is_documented() {
    let docs = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/config.md")).unwrap();
    let sections = ["", "data", "model", "train", "prune", "quantize"];
    let mut missing = Vec::new();
    for section in sections {
        let text = match section {
            "" => format!("zzz = 1\n{MINIMAL}"),
            "model" => format!("{MINIMAL}zzz = 1\n"),
            _ => format!("{MINIMAL}[{section}]\nzzz = 1\n"),
        };
        let message = load_err(&format!("keys{section}.toml"), &text, &[]);
        let (_, expected) = message.split_once("expected one of ").expect("serde lists the fields");
        let fields: Vec<&str> = expected.split(';').next().unwrap().split(", ").map(|f| f.trim_matches('`')).collect();
        assert!(fields.len() >= 5, "[{section}] has fields {fields:?}");
        for field in fields.into_iter().filter(|f| !(section.is_empty() && sections.contains(f))) {
            let key = if section.is_empty() { field.to_string() } else { format!("{section}.{field}") };
            if !docs.contains(&format!("`{key}`")) && !docs.contains(&format!("`{key}.")) {
                missing.push(key);
            }
        }
    }
    assert!(missing.is_empty(), "docs/config.md does not document {missing:?}");
}

#[test]
fn quantize_needs_weight_pruning_and_bits_in_range() {
    let pruned = format!("{MINIMAL}[prune]\ntarget = 0.9\n[quantize]\n");
    Config::load(&write("quantize.toml", &pruned), &[]).unwrap();
    let message = load_err("quantize-alone.toml", &format!("{MINIMAL}[quantize]\nfc_bits = 5\n"), &[]);
    assert!(message.contains("quantize.method") && message.contains("[prune]"), "{message}");
    for bits in ["0", "17"] {
        let message = load_err("quantize-bits.toml", &pruned, &[&format!("quantize.fc_bits={bits}")]);
        assert!(message.contains("quantize.fc_bits") && message.contains("1..=16"), "{message}");
    }
    let message = load_err("quantize-linear.toml", &pruned, &["quantize.method=linear", "quantize.conv_bits=9"]);
    assert!(message.contains("quantize.conv_bits") && message.contains("2..=8"), "{message}");
    let neuron = format!("{MINIMAL}[prune]\nstrategy = \"neuron\"\ncriterion = \"l1\"\ntarget = 0.5\n[quantize]\n");
    let message = load_err("quantize-neuron.toml", &neuron, &[]);
    assert!(message.contains("quantize.method"), "{message}");
}

#[test]
fn scratch_needs_a_method_that_removes_units_and_a_known_budget() {
    let neuron =
        format!("{MINIMAL}[prune]\nstrategy = \"neuron\"\ncriterion = \"l1\"\ntarget = 0.5\nscratch = \"compute\"\n");
    Config::load(&write("scratch.toml", &neuron), &[]).unwrap();
    let weight = format!("{MINIMAL}[prune]\ntarget = 0.9\nscratch = \"epochs\"\n");
    let message = load_err("scratch-weight.toml", &weight, &[]);
    assert!(message.contains("prune.scratch") && message.contains("strategy = \"neuron\""), "{message}");
    let message = load_err("scratch-budget.toml", &neuron, &["prune.scratch=\"flops\""]);
    assert!(message.contains("scratch") && message.contains("epochs"), "{message}");
}

#[test]
fn a_list_of_enum_values_outside_a_sweep_says_to_sweep_it() {
    let text = format!("{MINIMAL}[prune]\nstrategy = \"neuron\"\ncriterion = [\"l1\", \"l2\"]\ntarget = 0.5\n");
    let message = load_err("criteria.toml", &text, &[]);
    assert!(message.contains("prune.criterion") && message.contains("coppice sweep"), "{message}");
}
