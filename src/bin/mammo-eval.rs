//! `mammo-eval`: judge a model on a labelled set with the server's own imaging, engine and model
//! code; predict an unlabelled set; audit a set for duplicates and class balance.

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use mammo_serve::config::{device_parser, DEFAULT_MODEL};
use mammo_serve::engine::onnx::{self, Device, GpuOptions, SessionOptions, DEFAULT_ORT_LIB};
use mammo_serve::engine::{EngineOptions, Unobserved};
use mammo_serve::eval::audit::{self, Unreadable};
use mammo_serve::eval::dataset::{self, Item, Layout};
use mammo_serve::eval::report::{
    with_interval, AssessmentCounts, AuditSection, Evaluation, ModelSection,
};
use mammo_serve::eval::{html, inference, manifest, prepared, report};
use mammo_serve::imaging::{DecodeLimits, FullField};
use mammo_serve::pipeline::{self, Admission, OnnxOptions, Pipeline};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

#[derive(Parser)]
#[command(
    name = "mammo-eval",
    version,
    about = "Offline evaluation of a mammo-serve model: the same preprocessing and engine as the server"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Metrics of a model on a labelled set: summary on stdout; metrics.json, predictions.csv and report.html in --out.
    Evaluate {
        #[command(flatten)]
        set: SetArgs,
        /// Folder for metrics.json, predictions.csv and report.html.
        #[arg(long)]
        out: PathBuf,
        /// families.csv (filename,family): the intervals resample families, and the audit counts them.
        #[arg(long, conflicts_with_all = ["split", "manifest"])]
        families: Option<PathBuf>,
        /// split.csv (filename,family,fold) from training.
        #[arg(long, conflicts_with = "manifest")]
        split: Option<PathBuf>,
        /// Evaluate only this fold of --split (its held-out families).
        #[arg(long, requires = "split")]
        fold: Option<u32>,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Predictions for an unlabelled folder, as a CSV.
    Predict {
        /// Folder of JPEG/PNG images.
        #[arg(long)]
        data: PathBuf,
        /// The predictions CSV to write.
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Write each image as the model sees it (decoded, grey-mapped, reduced, full-field steps,
    /// resized; before normalisation) as a 16-bit grey PNG in --out/images, with
    /// --out/manifest.csv: what training reads.
    Prepare {
        #[command(flatten)]
        set: SetArgs,
        /// Folder for images/, manifest.csv and prepare.json.
        #[arg(long)]
        out: PathBuf,
        /// The model whose preprocessing (input size, full-field steps, resize) is applied.
        #[arg(long, default_value = DEFAULT_MODEL)]
        model: PathBuf,
        /// Full-field steps instead of the model's (comma-separated; `none` for none): for
        /// training a model with other steps.
        #[arg(long)]
        steps: Option<String>,
        /// ONNX Runtime library (the model's metadata is read through it).
        #[arg(long, env = "ORT_DYLIB_PATH", default_value = DEFAULT_ORT_LIB)]
        ort_lib: PathBuf,
        /// Decoding threads (default: one per core).
        #[arg(long)]
        threads: Option<usize>,
    },
    /// Class balance and exact duplicates (same decoded pixels), within a set and against another.
    Audit {
        /// Labelled set (any layout).
        #[arg(long)]
        data: PathBuf,
        /// A second set (labelled or a plain folder) to check for images shared with --data.
        #[arg(long)]
        against: Option<PathBuf>,
        /// families.csv, to count families per class.
        #[arg(long)]
        families: Option<PathBuf>,
        /// Decoding threads (default: one per core).
        #[arg(long)]
        threads: Option<usize>,
    },
}

/// Where the images and their labels are: a labelled set in one of its layouts (or, for
/// `prepare`, a plain folder), or a site's study manifest.
#[derive(Args, Clone)]
#[group(required = true, multiple = false)]
struct SetArgs {
    /// Labelled set: a CSV `filename,label`, a folder of class folders, or label-prefixed file names.
    #[arg(long)]
    data: Option<PathBuf>,
    /// A site's study manifest: CSV with `path`, `patient` and any of `study`, `laterality`,
    /// `view`, `density` (A–D or 1–4), `malignant` (yes/no); intervals resample patients.
    #[arg(long)]
    manifest: Option<PathBuf>,
}

impl SetArgs {
    /// The file or folder named.
    fn path(&self) -> &Path {
        self.manifest
            .as_deref()
            .or(self.data.as_deref())
            .expect("clap requires --data or --manifest")
    }

    /// The labelled images and the layout they were read as.
    fn labelled(&self) -> anyhow::Result<(Vec<Item>, Layout)> {
        Ok(match &self.manifest {
            Some(path) => (manifest::read(path)?, Layout::Manifest),
            None => dataset::read_labelled(self.path())?,
        })
    }

    /// The images, labelled or (a plain folder) not.
    fn images(&self) -> anyhow::Result<Vec<Item>> {
        match self.labelled() {
            Ok((items, _)) => Ok(items),
            Err(_) if self.manifest.is_none() && self.path().is_dir() => {
                Ok(dataset::read_unlabelled(self.path())?)
            }
            Err(e) => Err(e),
        }
    }
}

#[derive(Args, Clone)]
struct RunArgs {
    /// ONNX model following the model contract.
    #[arg(long, default_value = DEFAULT_MODEL)]
    model: PathBuf,
    /// ONNX Runtime library.
    #[arg(long, env = "ORT_DYLIB_PATH", default_value = DEFAULT_ORT_LIB)]
    ort_lib: PathBuf,
    /// Execution provider.
    #[arg(long, default_value = "cpu", value_parser = device_parser())]
    device: Device,
    /// Images per engine run.
    #[arg(long, default_value_t = 16)]
    batch: usize,
    /// Decoding threads ahead of the engine (default: half the cores, at least one).
    #[arg(long)]
    decoders: Option<usize>,
    /// ONNX Runtime intra-op threads (0: one per core).
    #[arg(long, default_value_t = 0)]
    intra_threads: usize,
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn main() -> ExitCode {
    match run(Cli::parse().command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Evaluate {
            set,
            out,
            families,
            split,
            fold,
            run,
        } => evaluate(
            &set,
            &out,
            families.as_deref().or(split.as_deref()),
            fold,
            &run,
        ),
        Command::Predict { data, out, run } => predict(&data, &out, &run),
        Command::Prepare {
            set,
            out,
            model,
            steps,
            ort_lib,
            threads,
        } => prepare(
            &set,
            &out,
            model,
            steps.as_deref(),
            ort_lib,
            threads.unwrap_or_else(cores),
        ),
        Command::Audit {
            data,
            against,
            families,
            threads,
        } => audit_command(
            &data,
            against.as_deref(),
            families.as_deref(),
            threads.unwrap_or_else(cores),
        ),
    }
}

/// `prepare`: every image of the set through the model's preprocessing into `out`.
fn prepare(
    set: &SetArgs,
    out: &Path,
    model: PathBuf,
    steps: Option<&str>,
    ort_lib: PathBuf,
    threads: usize,
) -> anyhow::Result<ExitCode> {
    let items = set.images()?;
    let data = set.path().to_path_buf();
    let run = RunArgs {
        model,
        ort_lib,
        device: Device::Cpu,
        batch: 1,
        decoders: Some(1),
        intra_threads: 1,
    };
    let info = load_pipeline(&run)?.model().clone();
    let mut preprocessing = info.metadata.preprocessing.clone();
    if let Some(steps) = steps {
        preprocessing.steps = match steps.trim() {
            "none" => FullField::default(),
            names => names.parse().map_err(|e| anyhow::anyhow!("--steps: {e}"))?,
        };
    }
    std::fs::create_dir_all(out.join("images"))
        .with_context(|| format!("cannot create {}", out.display()))?;
    let limits = DecodeLimits::default();
    let bar = progress_bar(items.len());
    let chunk = items.len().div_ceil(threads.max(1)).max(1);
    let results: Vec<(String, Result<prepared::Written, String>)> = std::thread::scope(|scope| {
        let workers: Vec<_> = items
            .chunks(chunk)
            .enumerate()
            .map(|(c, part)| {
                let (preprocessing, limits, bar) = (&preprocessing, &limits, &bar);
                scope.spawn(move || {
                    part.iter()
                        .enumerate()
                        .map(|(i, item)| {
                            bar.inc(1);
                            let index = c * chunk + i;
                            let written =
                                prepared::prepare(index, item, preprocessing, limits, out);
                            (item.name.clone(), written)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("a preparing thread panicked"))
            .collect()
    });
    bar.finish_and_clear();
    let (written, failed): (Vec<_>, Vec<_>) = results.into_iter().partition(|(_, r)| r.is_ok());
    let written: Vec<prepared::Written> = written.into_iter().filter_map(|(_, r)| r.ok()).collect();
    prepared::write_manifest(&out.join("manifest.csv"), &written)?;
    let description = serde_json::json!({
        "data": std::fs::canonicalize(&data).unwrap_or(data.clone()),
        "model": {"path": info.path, "version": info.metadata.version, "sha256": info.sha256},
        "steps": preprocessing.steps.names().join(","),
        "width": preprocessing.width,
        "height": preprocessing.height,
        "images_listed": items.len(),
        "images_written": written.len(),
        "unreadable": failed.iter().map(|(name, e)| serde_json::json!({
            "name": name, "error": e.as_ref().err(),
        })).collect::<Vec<_>>(),
    });
    std::fs::write(
        out.join("prepare.json"),
        serde_json::to_string_pretty(&description)? + "\n",
    )?;
    println!(
        "mammo-eval prepare: {} images of {} ({}) written to {} ({}×{}, 16-bit grey, steps {})",
        written.len(),
        items.len(),
        data.display(),
        out.display(),
        preprocessing.width,
        preprocessing.height,
        preprocessing.steps.names().join(",")
    );
    for (name, error) in &failed {
        println!(
            "  unreadable: {name}: {}",
            error.as_ref().err().map_or("", String::as_str)
        );
    }
    Ok(if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

/// Family and fold by file name.
type Groups = HashMap<String, (String, Option<u32>)>;

fn families_of(groups: Option<&Groups>) -> Option<HashMap<String, String>> {
    groups.map(|g| g.iter().map(|(k, (f, _))| (k.clone(), f.clone())).collect())
}

/// The server's pipeline over the model of `run`, waiting for room in the engine's queue
/// instead of refusing.
fn load_pipeline(run: &RunArgs) -> anyhow::Result<Pipeline> {
    let env = onnx::environment(&run.ort_lib)?;
    if !run.model.is_file() {
        bail!("model file {} not found", run.model.display());
    }
    let options = OnnxOptions {
        session: SessionOptions {
            model: run.model.clone(),
            device: run.device,
            gpu: GpuOptions {
                fp16: false,
                trt_cache_dir: PathBuf::from(".trt-cache"),
            },
            intra_threads: run.intra_threads,
            intra_op_spinning: true,
        },
        precision: None,
        workers: 1,
        warmup_runs: 1,
        engine: EngineOptions {
            max_queue_size: 4 * run.batch.max(1),
            max_batch_size: run.batch.max(1),
            max_queue_delay: std::time::Duration::ZERO,
        },
    };
    let (engine, model) = pipeline::load_onnx(&env, &options, Arc::new(Unobserved))?;
    let decoders = run.decoders.unwrap_or((cores() / 2).max(1));
    Ok(Pipeline::new(
        engine,
        model,
        DecodeLimits::default(),
        decoders,
        Admission::Wait,
    ))
}

fn progress_bar(len: usize) -> ProgressBar {
    let bar = ProgressBar::new(len as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} images  {per_sec}  ETA {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

/// Runs every item through the pipeline with a progress bar; returns outcomes and images/s.
fn infer(pipeline: &Pipeline, items: &[Item], run: &RunArgs) -> (Vec<inference::Outcome>, f64) {
    let bar = progress_bar(items.len());
    let started = Instant::now();
    let outcomes = inference::read_all(pipeline, items, 2 * run.batch.max(1), |done| {
        bar.set_position(done as u64)
    });
    bar.finish_and_clear();
    let rate = items.len() as f64 / started.elapsed().as_secs_f64();
    (outcomes, rate)
}

fn evaluate(
    set: &SetArgs,
    out: &Path,
    groups_file: Option<&Path>,
    fold: Option<u32>,
    run: &RunArgs,
) -> anyhow::Result<ExitCode> {
    let (mut items, layout) = set.labelled()?;
    let data = set.path();
    let groups = groups_file.map(dataset::read_groups).transpose()?;
    if let (Some(k), Some(groups)) = (fold, groups.as_ref()) {
        items = fold_of(items, groups, k, data)?;
    }
    let families = families_of(groups.as_ref());
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;

    let fingerprints = audit::fingerprints(&items, &DecodeLimits::default(), cores());
    let audit_section = AuditSection {
        class_counts: audit::class_counts(&items, families.as_ref()),
        duplicates: audit::duplicates(&items, &fingerprints.hashes),
        overlap: None,
        unreadable: fingerprints.unreadable,
    };

    let pipeline = load_pipeline(run)?;
    let info = pipeline.model().clone();
    let (outcomes, rate) = infer(&pipeline, &items, run);
    let (rows, failed) = report::rows(&items, &outcomes, families.as_ref());
    let threshold = f64::from(info.metadata.malignancy_threshold);
    let metrics = report::metrics(&rows, threshold);
    let metrics_assessed_only = report::metrics_assessed_only(&rows, threshold);
    let subgroups = report::subgroups(&rows, threshold);
    report::write_predictions(&out.join("predictions.csv"), &rows)?;
    let unreadable: Vec<Unreadable> = failed
        .into_iter()
        .map(|(name, error)| Unreadable { name, error })
        .collect();
    let file = Evaluation {
        data: data.to_path_buf(),
        layout,
        model: ModelSection::of(&info),
        split: groups_file.map(|g| {
            format!(
                "{}{}",
                g.display(),
                fold.map(|k| format!(" fold {k}")).unwrap_or_default()
            )
        }),
        images_listed: items.len(),
        images_evaluated: rows.len(),
        unreadable,
        images_per_second: rate,
        audit: audit_section,
        assessment: AssessmentCounts::of(&rows),
        metrics,
        metrics_assessed_only,
        subgroups,
    };
    std::fs::write(
        out.join("metrics.json"),
        serde_json::to_string_pretty(&file)? + "\n",
    )?;
    std::fs::write(out.join("report.html"), html::render(&file, &rows))?;
    print_summary(&file);
    Ok(if file.unreadable.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

/// The images of fold `k` of a split file; every image must be in the file.
fn fold_of(items: Vec<Item>, groups: &Groups, k: u32, data: &Path) -> anyhow::Result<Vec<Item>> {
    let missing = items
        .iter()
        .filter(|i| !groups.contains_key(&i.name))
        .count();
    if missing > 0 {
        bail!(
            "{missing} images of {} are not in the split file",
            data.display()
        );
    }
    let in_fold: Vec<Item> = items
        .into_iter()
        .filter(|i| groups[&i.name].1 == Some(k))
        .collect();
    if in_fold.is_empty() {
        bail!("fold {k} holds none of the images");
    }
    Ok(in_fold)
}

fn print_summary(f: &Evaluation) {
    println!(
        "mammo-eval: {} ({:?}), model {} {} (sha256 {}…)",
        f.data.display(),
        f.layout,
        f.model.name,
        f.model.version,
        &f.model.sha256[..12]
    );
    if let Some(split) = &f.split {
        println!("split: {split}");
    }
    println!(
        "images: {} listed, {} evaluated, {} unreadable; {:.1} images/s",
        f.images_listed,
        f.images_evaluated,
        f.unreadable.len(),
        f.images_per_second
    );
    for u in &f.unreadable {
        println!("  unreadable: {}: {}", u.name, u.error);
    }
    for c in &f.audit.class_counts {
        for w in &c.warnings {
            println!("  warning: {} {w}", c.label);
        }
    }
    if f.audit.duplicates.groups > 0 {
        println!(
            "  warning: {} groups of identical images ({} extra copies) inflate every metric",
            f.audit.duplicates.groups, f.audit.duplicates.extra_copies
        );
    }
    let a = &f.assessment;
    println!(
        "assessed {}, not assessable {} ({})",
        a.assessed,
        a.not_assessable,
        share_with_ci(a.not_assessable_share, a.not_assessable_share_ci95)
    );
    if let Some(only) = &f.metrics_assessed_only {
        println!(
            "on the assessed images alone: 8-class accuracy {}, malignancy AUC {}",
            only.classes
                .as_ref()
                .map_or("n/a".into(), |c| format!("{:.3}", c.accuracy)),
            only.malignancy
                .as_ref()
                .and_then(|m| m.auc)
                .map_or("n/a".into(), |v| format!("{v:.3}"))
        );
    }
    let m = &f.metrics;
    println!(
        "all labelled images ({}); 95% intervals resample {} {}:",
        m.images, m.resampling.groups, m.resampling.unit
    );
    if let Some(c) = &m.classes {
        println!(
            "  8-class ({} images): accuracy {}, balanced accuracy {}, ECE {}",
            c.images,
            with_interval(c.accuracy, c.accuracy_ci95),
            with_interval(c.balanced_accuracy, c.balanced_accuracy_ci95),
            with_interval(
                c.expected_calibration_error,
                c.expected_calibration_error_ci95
            )
        );
    }
    if let Some(d) = &m.density {
        println!(
            "  density ({} images): accuracy {}, linear-weighted kappa {}",
            d.images,
            with_interval(d.accuracy, d.accuracy_ci95),
            with_interval(d.kappa_linear, d.kappa_linear_ci95)
        );
    }
    if let Some(a) = &m.malignancy {
        println!(
            "  malignancy ({} images): AUC {}",
            a.images,
            a.auc.map_or("n/a".into(), |v| with_interval(v, a.auc_ci95))
        );
        println!(
            "  at threshold {:.4}: sensitivity {}, specificity {}; sensitivity at 90% specificity {}",
            a.threshold,
            with_interval(a.sensitivity, a.sensitivity_ci95),
            with_interval(a.specificity, a.specificity_ci95),
            with_interval(
                a.sensitivity_at_90_specificity,
                a.sensitivity_at_90_specificity_ci95
            )
        );
        println!(
            "  P(malignant): binary ECE {} (15 bins), Brier {}, average precision {}",
            with_interval(a.binary_ece, a.binary_ece_ci95),
            with_interval(a.brier, a.brier_ci95),
            a.average_precision
                .map_or("n/a".into(), |v| with_interval(v, a.average_precision_ci95))
        );
    }
    for table in &f.subgroups {
        if table.rows.len() > 1 {
            let rows: Vec<String> = table
                .rows
                .iter()
                .map(|r| format!("{} {} images", r.value, r.images))
                .collect();
            println!("by {}: {} (report.html)", table.by, rows.join(", "));
        }
    }
}

fn share_with_ci(value: f64, interval: Option<(f64, f64)>) -> String {
    interval.map_or(format!("{:.1}%", 100.0 * value), |(lo, hi)| {
        format!(
            "{:.1}% [{:.1}–{:.1}%]",
            100.0 * value,
            100.0 * lo,
            100.0 * hi
        )
    })
}

fn predict(data: &Path, out: &Path, run: &RunArgs) -> anyhow::Result<ExitCode> {
    let items = dataset::read_unlabelled(data)?;
    let pipeline = load_pipeline(run)?;
    let (outcomes, rate) = infer(&pipeline, &items, run);
    let (rows, failed) = report::rows(&items, &outcomes, None);
    report::write_predictions(out, &rows)?;
    println!(
        "{} predictions written to {} ({rate:.1} images/s)",
        rows.len(),
        out.display()
    );
    for (name, error) in &failed {
        println!("  unreadable: {name}: {error}");
    }
    Ok(if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

fn audit_command(
    data: &Path,
    against: Option<&Path>,
    families: Option<&Path>,
    threads: usize,
) -> anyhow::Result<ExitCode> {
    let (items, layout) = dataset::read_labelled(data)?;
    let groups = families.map(dataset::read_groups).transpose()?;
    let families = families_of(groups.as_ref());
    let limits = DecodeLimits::default();
    let prints = audit::fingerprints(&items, &limits, threads);
    let overlap = match against {
        Some(other) => {
            let other_items = dataset::read_labelled(other)
                .map(|(i, _)| i)
                .or_else(|_| dataset::read_unlabelled(other))?;
            let other_prints = audit::fingerprints(&other_items, &limits, threads);
            Some(audit::overlap(
                &items,
                &prints.hashes,
                &other_items,
                &other_prints.hashes,
            ))
        }
        None => None,
    };
    let section = AuditSection {
        class_counts: audit::class_counts(&items, families.as_ref()),
        duplicates: audit::duplicates(&items, &prints.hashes),
        overlap,
        unreadable: prints.unreadable,
    };
    println!(
        "audit of {} ({layout:?}): {} images",
        data.display(),
        items.len()
    );
    for c in &section.class_counts {
        let families = c
            .families
            .map_or(String::new(), |f| format!(", {f} families"));
        println!(
            "  {} {:>6} images ({:>5.1}%{families}){}",
            c.label,
            c.images,
            c.share * 100.0,
            if c.warnings.is_empty() {
                String::new()
            } else {
                format!("  warning: {}", c.warnings.join("; "))
            }
        );
    }
    let d = &section.duplicates;
    println!("exact duplicates (same decoded pixels): {} groups, {} extra copies, {} groups with conflicting labels", d.groups, d.extra_copies, d.conflicting_labels);
    for example in &d.examples {
        println!("  e.g. {}", example.join(" = "));
    }
    if let Some(o) = &section.overlap {
        println!(
            "against {}: {} of its {} images also occur in {}",
            against.map(|p| p.display().to_string()).unwrap_or_default(),
            o.also_in_this_set,
            o.other_images,
            data.display()
        );
        for (a, b) in &o.examples {
            println!("  e.g. {a} = {b}");
        }
    }
    for u in &section.unreadable {
        println!("  unreadable: {}: {}", u.name, u.error);
    }
    Ok(if section.unreadable.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}
