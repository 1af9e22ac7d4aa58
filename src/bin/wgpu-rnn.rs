//! `wgpu-rnn` command line: `info` (adapters, limits) and `verify FILE...` (golden cases).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::Serialize;
use wgpu_rnn::golden::{Golden, model_case, run_case_with};
use wgpu_rnn::models::keras::{CpuBackend, GpuBackend, ModelBackend, Precision};
use wgpu_rnn::{Algorithm, Backend, Context};

#[derive(Parser)]
#[command(
    name = "wgpu-rnn",
    version,
    about = "Fused recurrent kernels on wgpu: info, golden verification, bench and tune"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, ValueEnum)]
enum BackendArg {
    Gpu,
    Cpu,
}

#[derive(Subcommand)]
enum Cmd {
    /// Adapters seen, the chosen one, and the features and limits the kernels use.
    Info,
    /// Runs golden files (format rnn-golden-v1) forward and backward and compares every tensor.
    Verify {
        /// Golden `.safetensors` files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Where to run.
        #[arg(long, value_enum, default_value = "gpu")]
        backend: BackendArg,
        /// Recurrence algorithm forced on the GPU: auto, persistent, stepwise, resident, grid or
        /// tiled (ConvLSTM2D; the recurrent cells run their auto choice for it).
        #[arg(long, default_value = "auto")]
        algorithm: String,
    },
    /// Times every cell's forward and forward+backward per implementation (GPU Persistent,
    /// GPU Stepwise, CPU reference); prints a table, optionally writes JSON (README schema).
    Bench {
        /// Small shapes for software adapters (LSTM B8 T100 I128 H128 and friends).
        #[arg(long)]
        quick: bool,
        /// Write the report as JSON to this file.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Cells to run, comma-separated: lstm, gru, rnn, convlstm2d, and gemm (the GEMM
        /// kernels side by side; pick them with --impls gemm_plain16,gemm_tiled64,...).
        #[arg(long, default_value = "lstm,gru,rnn,convlstm2d")]
        cells: String,
        /// Timed runs per measurement (median reported; at least 5).
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Implementations, comma-separated: persistent, stepwise, resident, grid, tiled
        /// (ConvLSTM2D), unfused, cpu; for the gemm cell gemm_plain16, gemm_tiled64,
        /// gemm_regblock, gemm_gpu, gemm_tile128, gemm_tile64, gemm_splitk, gemm_gpu_scalar
        /// (default: all).
        #[arg(
            long,
            default_value = "persistent,stepwise,resident,grid,tiled,unfused,cpu"
        )]
        impls: String,
        /// Recurrent shapes instead of the defaults: "B,T,I,H;B,T,I,H".
        #[arg(long)]
        shapes: Option<String>,
        /// GEMM shapes for the gemm cell instead of the defaults (800,128,512 and 512³, plus
        /// 2048³ without --quick): "M,K,N;M,K,N".
        #[arg(long)]
        gemm_shapes: Option<String>,
    },
    /// Builds a Sequential model from a Keras config (`model.get_config()` JSON or a `.keras`
    /// file's config.json) and prints a Keras-style summary ending with `Total params: N`.
    Summary {
        /// The config JSON file.
        config: PathBuf,
    },
    /// Measures which recurrence algorithm is fastest on this adapter for each cell, pass and
    /// shape, and writes the table `Algorithm::Auto` then follows (load it with
    /// WGPU_RNN_AUTO_TABLE=FILE or Context::set_auto_table). Prints it as Markdown.
    Tune(TuneArgs),
    /// Joins two bench JSON reports (e.g. this crate's and bench/pytorch_baseline.py's) into a
    /// side-by-side table with the ratio of their best medians.
    Compare {
        /// First report (`a`).
        a: PathBuf,
        /// Second report (`b`).
        b: PathBuf,
    },
}

fn compare(a: &PathBuf, b: &PathBuf) -> ExitCode {
    let read = |p: &PathBuf| -> Result<serde_json::Value, String> {
        // Regular files only, within the host-memory cap: a FIFO is refused, not waited on.
        let bytes = wgpu_rnn::limits::read_regular_file(p).map_err(|e| e.to_string())?;
        serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", p.display()))
    };
    match (read(a), read(b)) {
        (Ok(va), Ok(vb)) => match wgpu_rnn::bench::compare(&va, &vb) {
            Ok(t) => {
                print!("{t}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("wgpu-rnn compare: {e}");
                ExitCode::FAILURE
            }
        },
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("wgpu-rnn compare: {e}");
            ExitCode::FAILURE
        }
    }
}

/// What `tune` was asked for.
#[derive(Args)]
struct TuneArgs {
    /// Where to write the table (JSON, format wgpu-rnn-auto-v1).
    #[arg(long)]
    out: PathBuf,
    /// Build the table from a `bench --json` report instead of measuring (no adapter is
    /// opened; the report's adapter is the table's).
    #[arg(long)]
    from: Option<PathBuf>,
    /// Cells to measure, comma-separated: lstm, gru, rnn.
    #[arg(long, default_value = "lstm,gru,rnn")]
    cells: String,
    /// Shapes "B,T,I,H;…" instead of the defaults (B 1, 8, 64, 256 × H = I 64, 128, 256,
    /// 512 at T 100; with --quick B 1, 8 × H 16, 32 at T 20).
    #[arg(long)]
    shapes: Option<String>,
    /// The small default shapes, for software adapters.
    #[arg(long)]
    quick: bool,
    /// Timed runs per algorithm and shape (median; at least 5).
    #[arg(long, default_value_t = 5)]
    runs: usize,
}

fn tune(a: TuneArgs) -> ExitCode {
    use wgpu_rnn::auto_table::{self, AutoTable};
    let table = match &a.from {
        Some(path) => wgpu_rnn::limits::read_regular_file(path).and_then(|bytes| {
            let v = serde_json::from_slice(&bytes)
                .map_err(|e| wgpu_rnn::Error::Format(format!("{}: {e}", path.display())))?;
            AutoTable::from_bench(&v)
        }),
        None => (|| {
            let shapes = match &a.shapes {
                Some(s) => wgpu_rnn::bench::parse_shapes(s)?,
                None => auto_table::default_shapes(a.quick),
            };
            let cells: Vec<String> = a.cells.split(',').map(|c| c.trim().to_string()).collect();
            let gpu = Backend::gpu()?;
            auto_table::measure(&gpu, &cells, &shapes, a.runs).map(|(t, _)| t)
        })(),
    };
    match table.and_then(|t| t.save(&a.out).map(|_| t)) {
        Ok(t) => {
            print!("{}", t.markdown());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("wgpu-rnn tune: {e}");
            ExitCode::FAILURE
        }
    }
}

fn bench(
    quick: bool,
    json: Option<PathBuf>,
    cells: &str,
    runs: usize,
    impls: &str,
    (shapes, gemm_shapes): (Option<&str>, Option<&str>),
) -> ExitCode {
    let shapes = match shapes.map(wgpu_rnn::bench::parse_shapes).transpose() {
        Ok(s) => s.unwrap_or_default(),
        Err(e) => {
            eprintln!("wgpu-rnn bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    let gemm_shapes = match gemm_shapes
        .map(wgpu_rnn::bench::parse_gemm_shapes)
        .transpose()
    {
        Ok(s) => s.unwrap_or_default(),
        Err(e) => {
            eprintln!("wgpu-rnn bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    let list = |text: &str| -> Vec<String> {
        text.split(',')
            .map(|c| c.trim().to_string())
            .filter(|c| !c.is_empty())
            .collect()
    };
    let opts = wgpu_rnn::bench::BenchOptions {
        quick,
        cells: list(cells),
        runs,
        impls: list(impls),
        shapes,
        gemm_shapes,
    };
    // Names are checked before the adapter is opened, so a typo fails at once.
    if opts.impls.is_empty() {
        eprintln!(
            "wgpu-rnn bench: --impls {impls:?} names no implementation; expected some of {}",
            wgpu_rnn::bench::impl_names().join(", ")
        );
        return ExitCode::FAILURE;
    }
    if let Err(e) = opts.validate() {
        eprintln!("wgpu-rnn bench: {e}");
        return ExitCode::FAILURE;
    }
    let gpu = match Backend::gpu() {
        Ok(b) => b,
        Err(e) => {
            eprintln!("wgpu-rnn: {e}");
            return ExitCode::FAILURE;
        }
    };
    let report = match wgpu_rnn::bench::run(&opts, &gpu) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("wgpu-rnn bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    print!("{}", wgpu_rnn::bench::table(&report));
    if let Some(path) = json {
        let text = match serde_json::to_string_pretty(&report) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("wgpu-rnn bench: cannot encode JSON: {e}");
                return ExitCode::FAILURE;
            }
        };
        if let Err(e) = std::fs::write(&path, text) {
            eprintln!("wgpu-rnn bench: cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

#[derive(Serialize)]
struct Line<'a> {
    case: &'a str,
    backend: &'a str,
    tensor: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_abs: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ref_max_abs: Option<f64>,
    pass: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

fn print_line(l: &Line) {
    match serde_json::to_string(l) {
        Ok(s) => println!("{s}"),
        Err(e) => println!("{{\"error\":\"cannot encode line: {e}\",\"pass\":false}}"),
    }
}

fn verify(files: &[PathBuf], backend: BackendArg, algorithm: &str) -> ExitCode {
    let algorithm: Algorithm = match algorithm.parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("wgpu-rnn verify: {e}");
            return ExitCode::FAILURE;
        }
    };
    let backend = match backend {
        BackendArg::Cpu => Backend::Cpu,
        BackendArg::Gpu => match Backend::gpu() {
            Ok(b) => b,
            Err(e) => {
                eprintln!("wgpu-rnn: {e}");
                println!("0 passed, {} failed", files.len());
                return ExitCode::FAILURE;
            }
        },
    };
    let name = backend.name();
    let (mut passed, mut failed) = (0usize, 0usize);
    let model_backend: Box<dyn ModelBackend> = match &backend {
        Backend::Cpu => Box::new(CpuBackend {
            precision: Precision::F64,
        }),
        Backend::Gpu(ctx) => Box::new(GpuBackend::new(ctx.clone())),
    };
    for f in files {
        // Whole-model goldens (keras-model-golden-v1) have their own runner.
        if model_case::is_model_golden(f) {
            for line in model_case::verify_lines(f, model_backend.as_ref()) {
                if line.pass {
                    passed += 1;
                } else {
                    failed += 1;
                }
                match serde_json::to_string(&line) {
                    Ok(s) => println!("{s}"),
                    Err(e) => println!("{{\"error\":\"cannot encode line: {e}\",\"pass\":false}}"),
                }
            }
            continue;
        }
        let stem = f
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let result = Golden::load(f)
            .and_then(|g| run_case_with(&g, &backend, algorithm).map(|r| (g.case, r)));
        match result {
            Ok((case, reports)) => {
                for r in reports {
                    if r.pass {
                        passed += 1;
                    } else {
                        failed += 1;
                    }
                    print_line(&Line {
                        case: &case,
                        backend: name,
                        tensor: Some(&r.tensor),
                        max_abs: Some(r.max_abs),
                        ref_max_abs: Some(r.ref_max_abs),
                        pass: r.pass,
                        error: None,
                    });
                }
            }
            Err(e) => {
                failed += 1;
                print_line(&Line {
                    case: &stem,
                    backend: name,
                    tensor: None,
                    max_abs: None,
                    ref_max_abs: None,
                    pass: false,
                    error: Some(e.to_string()),
                });
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    if failed == 0 && passed > 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn summary(config: &Path) -> ExitCode {
    // Regular files only (a FIFO is refused, not waited on), within the host-memory cap.
    let text = match wgpu_rnn::limits::read_regular_file(config).and_then(|b| {
        String::from_utf8(b)
            .map_err(|e| wgpu_rnn::Error::Format(format!("{}: {e}", config.display())))
    }) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("wgpu-rnn summary: {e}");
            return ExitCode::FAILURE;
        }
    };
    match wgpu_rnn::models::keras::parse_config_str(&text) {
        Ok(p) => {
            print!("{}", wgpu_rnn::models::keras::summary(&p.spec));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("wgpu-rnn summary: {}: {e}", config.display());
            ExitCode::FAILURE
        }
    }
}

fn info() -> ExitCode {
    println!("adapters:");
    for a in Context::list_adapters() {
        println!(
            "  - {} ({}, {}, driver: {})",
            a.name, a.backend, a.device_type, a.driver
        );
    }
    match Context::new() {
        Ok(ctx) => {
            let a = ctx.adapter();
            println!(
                "chosen: {} ({}, {}, driver: {})",
                a.name, a.backend, a.device_type, a.driver
            );
            println!("features: {:?}", ctx.device().features());
            let l = ctx.limits();
            println!("limits:");
            println!(
                "  max_compute_workgroup_storage_size: {}",
                l.max_compute_workgroup_storage_size
            );
            println!(
                "  max_compute_invocations_per_workgroup: {}",
                l.max_compute_invocations_per_workgroup
            );
            println!(
                "  max_compute_workgroups_per_dimension: {}",
                l.max_compute_workgroups_per_dimension
            );
            println!(
                "  max_storage_buffer_binding_size: {}",
                l.max_storage_buffer_binding_size
            );
            println!(
                "  max_storage_buffers_per_shader_stage: {}",
                l.max_storage_buffers_per_shader_stage
            );
            println!("  max_buffer_size: {}", l.max_buffer_size);
            println!(
                "  min_uniform_buffer_offset_alignment: {}",
                l.min_uniform_buffer_offset_alignment
            );
            println!("resident max hidden_size (forward and backward, from the limits above):");
            for (cell, h) in wgpu_rnn::algorithm::resident_max_hidden(&ctx) {
                println!("  {cell}: {h}");
            }
            println!("grid max hidden_size (batch 1, at most 64 workgroups):");
            for (cell, h) in wgpu_rnn::algorithm::grid_max_hidden(&ctx) {
                println!("  {cell}: {h}");
            }
            match ctx.auto_table() {
                Some(t) => println!(
                    "auto table: {} measured entries ({})",
                    t.entries.len(),
                    wgpu_rnn::auto_table::AUTO_TABLE_ENV
                ),
                None => match ctx.auto_table_skipped() {
                    Some(why) => println!("auto table: none ({why})"),
                    None => println!("auto table: none (the built-in rules decide)"),
                },
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("chosen: none ({e})");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Info => info(),
        Cmd::Verify {
            files,
            backend,
            algorithm,
        } => verify(&files, backend, &algorithm),
        Cmd::Bench {
            quick,
            json,
            cells,
            runs,
            impls,
            shapes,
            gemm_shapes,
        } => bench(
            quick,
            json,
            &cells,
            runs,
            &impls,
            (shapes.as_deref(), gemm_shapes.as_deref()),
        ),
        Cmd::Compare { a, b } => compare(&a, &b),
        Cmd::Tune(a) => tune(a),
        Cmd::Summary { config } => summary(&config),
    }
}
