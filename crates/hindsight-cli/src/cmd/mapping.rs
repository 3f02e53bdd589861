//! `hindsight mapping init|check|schema`: write, try and describe dataset
//! mappings (the format is documented in docs/mapping.md).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use hindsight_logs::{
    check_source, guess_mapping, mapping_schema, CategoryMapping, DatasetMapping, SourceCheck,
    TagMapping, PRESETS,
};

/// Write, check and describe dataset mappings (see docs/mapping.md).
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Guess a starting mapping from a log's header and first rows.
    ///
    /// The mapping (JSON) goes to stdout, one line per guess (delimiter,
    /// header, each column's role, timestamp unit, behavior types, item
    /// table) to stderr: JSON has no comments. Check the result with
    /// `hindsight mapping check`.
    Init(InitArgs),
    /// Show what a mapping makes of the first rows of a log.
    ///
    /// Which column each role reads, behavior type counts, the time range,
    /// joined features, rejects by reason with examples, and warnings.
    /// Exits with status 1 when no row parses.
    Check(CheckArgs),
    /// Print the JSON schema of a mapping (docs/mapping.schema.json).
    Schema,
}

#[derive(clap::Args)]
struct InitArgs {
    /// The log (CSV, TSV, `::`-separated, ...).
    #[arg(long)]
    from: PathBuf,
    /// An item table to join by item id (genres, categories or tags).
    #[arg(long)]
    item_table: Option<PathBuf>,
}

#[derive(clap::Args)]
struct CheckArgs {
    /// The mapping: a JSON file, or a preset name (taobao, movielens).
    mapping: String,
    /// The log (a file, or a folder with the mapping's log_file).
    #[arg(value_name = "LOG")]
    input: PathBuf,
    /// How many rows to read.
    #[arg(long, default_value_t = 1000)]
    rows: u64,
    /// Print the result as one JSON object on stdout.
    #[arg(long)]
    json: bool,
}

/// Runs `hindsight mapping ...`.
pub fn run(a: Args) -> Result<()> {
    match a.command {
        Command::Init(a) => {
            let g = guess_mapping(&a.from, a.item_table.as_deref())?;
            for n in &g.notes {
                eprintln!("guess: {n}");
            }
            eprintln!(
                "check it with: hindsight mapping check MAPPING.json {}",
                a.from.display()
            );
            println!("{}", serde_json::to_string_pretty(&g.mapping)?);
            Ok(())
        }
        Command::Check(a) => {
            let mapping = load_mapping(&a.mapping)?;
            let c = check_source(&mapping, &a.input, a.rows, 3).with_context(|| {
                format!("checking mapping {} on {}", a.mapping, a.input.display())
            })?;
            if a.json {
                super::print_json(&c)?;
            } else {
                print_check(&mapping, &a.input, &c);
            }
            if c.nothing_parses() {
                bail!("{}", nothing_parses(&c, &a.input));
            }
            Ok(())
        }
        Command::Schema => {
            println!("{}", serde_json::to_string_pretty(&mapping_schema())?);
            Ok(())
        }
    }
}

/// A mapping file, or a preset when no such file exists.
fn load_mapping(arg: &str) -> Result<DatasetMapping> {
    let path = Path::new(arg);
    if !path.exists() && PRESETS.contains(&arg) {
        return Ok(DatasetMapping::preset(arg)?);
    }
    Ok(DatasetMapping::load(path)?)
}

/// The error of a log none of whose first rows parse: counts by reason
/// with the first example of each.
pub fn nothing_parses(c: &SourceCheck, log: &Path) -> String {
    let reasons: Vec<String> = c
        .rejects
        .iter()
        .map(|r| match r.examples.first() {
            Some(e) => format!(
                "{} {} (e.g. line {}: {})",
                r.count,
                r.reason.as_str(),
                e.line,
                e.message
            ),
            None => format!("{} {}", r.count, r.reason.as_str()),
        })
        .collect();
    format!(
        "none of the first {} rows of {} parse with this mapping: {}; fix the mapping (try `hindsight mapping check MAPPING LOG`, docs/mapping.md)",
        c.rows_read,
        log.display(),
        reasons.join("; ")
    )
}

fn print_check(mapping: &DatasetMapping, log: &Path, c: &SourceCheck) {
    println!(
        "mapping \"{}\" on {} (first {} rows):",
        mapping.name,
        log.display(),
        c.rows_read
    );
    for m in &c.columns {
        println!("  {:<14} <- {} (column {})", m.role, m.column, m.index);
    }
    let types: Vec<String> = c
        .behavior_types
        .iter()
        .map(|(n, k)| format!("{n} {k}"))
        .collect();
    println!("  behavior types: {}", types.join(", "));
    if let Some((lo, hi)) = &c.time_range {
        println!("  time range: {lo} .. {hi}");
    }
    println!("  users: {}, items: {}", c.users, c.items);
    match &mapping.categories {
        CategoryMapping::None => println!("  categories: none"),
        CategoryMapping::Column(col) => println!(
            "  categories: column {col}, on {} of {} rows",
            c.rows_with_categories, c.parsed
        ),
        CategoryMapping::ItemTable(t) => println!(
            "  categories: table {} ({} values), on {} of {} rows",
            t.path, c.category_values, c.rows_with_categories, c.parsed
        ),
    }
    match &mapping.tags {
        TagMapping::None => println!("  tags: none"),
        TagMapping::TagTable(t) => println!(
            "  tags: table {} ({} values), on {} of {} rows",
            t.path, c.tag_values, c.rows_with_tags, c.parsed
        ),
    }
    println!(
        "rows: {} read, {} parsed, {} rejected",
        c.rows_read, c.parsed, c.rejected
    );
    for r in &c.rejects {
        println!("  {} rejected: {}", r.count, r.reason.as_str());
        for e in &r.examples {
            println!("    line {}: {}", e.line, e.message);
        }
    }
    for w in &c.warnings {
        println!("warning: {w}");
    }
}
