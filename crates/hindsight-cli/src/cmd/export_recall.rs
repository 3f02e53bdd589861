//! `hindsight export-recall`: the recall split for peer libraries.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use hindsight_index::BehaviorIndex;
use hindsight_recall::{RecallSplit, UserSequence};

/// Export the recall protocol's leave-last-out split (docs/recall.md).
///
/// `--format recbole` writes RecBole's benchmark atomic files for
/// sequential models, already augmented the way RecBole augments a
/// sequence itself, so that RecBole trains and evaluates on exactly
/// hindsight's split: NAME.train.inter (one row per training behavior
/// after a user's first: the item ids before it, at most --max-len, and
/// the item), NAME.valid.inter and NAME.test.inter (one row per user:
/// the history before the target and the target), NAME.item (every
/// catalog item, so that RecBole ranks over the same catalog), and
/// meta.json (the counts). Run RecBole with `benchmark_filename: [train,
/// valid, test]` (scripts/peer/recbole_sasrec.sh does).
#[derive(clap::Args)]
pub struct Args {
    /// Index folder.
    #[arg(long)]
    pub index: PathBuf,
    /// Output folder (created; files in it are replaced).
    #[arg(long)]
    pub out: PathBuf,
    /// Output format (only `recbole`).
    #[arg(long, default_value = "recbole")]
    pub format: String,
    /// Dataset name: the files' prefix (RecBole's `dataset`).
    #[arg(long, default_value = "hindsight")]
    pub name: String,
    /// Users with fewer behaviors are left out (at least 3: train, valid, test).
    #[arg(long, default_value_t = RecallSplit::MIN_BEHAVIORS)]
    pub min_behaviors: usize,
    /// Most recent items kept in a history (RecBole's MAX_ITEM_LIST_LENGTH).
    #[arg(long, default_value_t = 50, value_parser = super::at_least_one)]
    pub max_len: usize,
    /// Print a JSON summary on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Counts of what was written.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Counts {
    /// Users in the split.
    pub users: usize,
    /// Users left out for short histories.
    pub skipped_users: usize,
    /// Catalog items (rows of NAME.item).
    pub items: usize,
    /// Rows of NAME.train.inter.
    pub train_rows: usize,
    /// Rows of NAME.valid.inter.
    pub valid_rows: usize,
    /// Rows of NAME.test.inter.
    pub test_rows: usize,
    /// Most recent items kept per history.
    pub max_len: usize,
}

const HEADER: &str = "user_id:token\titem_id_list:token_seq\titem_id:token";

fn row(
    w: &mut impl Write,
    user: u64,
    history: &[hindsight_core::Behavior],
    item: u64,
    max_len: usize,
) -> std::io::Result<()> {
    let start = history.len().saturating_sub(max_len);
    write!(w, "{user}\t")?;
    for (i, b) in history[start..].iter().enumerate() {
        if i > 0 {
            w.write_all(b" ")?;
        }
        write!(w, "{}", b.item_id)?;
    }
    writeln!(w, "\t{item}")
}

fn create(path: &Path) -> Result<BufWriter<File>> {
    Ok(BufWriter::new(
        File::create(path).with_context(|| format!("creating {}", path.display()))?,
    ))
}

/// Writes the RecBole files of `split` into `out`.
pub fn write_recbole(
    split: &RecallSplit,
    out: &Path,
    name: &str,
    max_len: usize,
) -> Result<Counts> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut train = create(&out.join(format!("{name}.train.inter")))?;
    let mut valid = create(&out.join(format!("{name}.valid.inter")))?;
    let mut test = create(&out.join(format!("{name}.test.inter")))?;
    for w in [&mut train, &mut valid, &mut test] {
        writeln!(w, "{HEADER}")?;
    }
    let (mut train_rows, mut valid_rows, mut test_rows) = (0, 0, 0);
    for u in &split.users {
        let UserSequence { user, .. } = u;
        let t = u.train();
        // Position 0 has no history: RecBole's own augmentation skips it too.
        for i in 1..t.len() {
            row(&mut train, *user, &t[..i], t[i].item_id, max_len)?;
            train_rows += 1;
        }
        row(
            &mut valid,
            *user,
            u.valid_history(),
            u.valid().item_id,
            max_len,
        )?;
        valid_rows += 1;
        row(
            &mut test,
            *user,
            u.test_history(),
            u.test().item_id,
            max_len,
        )?;
        test_rows += 1;
    }
    let mut items = create(&out.join(format!("{name}.item")))?;
    writeln!(items, "item_id:token")?;
    for (item, _) in &split.catalog {
        writeln!(items, "{item}")?;
    }
    for w in [&mut train, &mut valid, &mut test, &mut items] {
        w.flush()?;
    }
    let counts = Counts {
        users: split.users.len(),
        skipped_users: split.skipped_users,
        items: split.catalog.len(),
        train_rows,
        valid_rows,
        test_rows,
        max_len,
    };
    std::fs::write(out.join("meta.json"), serde_json::to_vec_pretty(&counts)?)?;
    Ok(counts)
}

pub fn run(a: Args) -> Result<()> {
    if a.format != "recbole" {
        bail!(
            "unknown --format {:?}; the only format is recbole",
            a.format
        );
    }
    if a.name.is_empty() || a.name.contains(['/', '.', '\\']) {
        bail!(
            "--name {:?} must be a plain file prefix (no '/', '.' or '\\')",
            a.name
        );
    }
    let index = BehaviorIndex::open_read_only(&a.index)?;
    let split = RecallSplit::leave_last_out(&index.snapshot(), a.min_behaviors)?;
    let counts = write_recbole(&split, &a.out, &a.name, a.max_len)?;
    if a.json {
        return super::print_json(&counts);
    }
    println!(
        "exported the recall split of {} users ({} left out), {} items: {} train, {} valid, {} test rows (histories of at most {}) to {}",
        counts.users,
        counts.skipped_users,
        counts.items,
        counts.train_rows,
        counts.valid_rows,
        counts.test_rows,
        counts.max_len,
        a.out.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hindsight_core::{Behavior, ItemFeatures};

    fn split() -> RecallSplit {
        let b = |user, seq, item| Behavior {
            user_id: user,
            seq,
            item_id: item,
            features: ItemFeatures::default(),
            behavior_type: 0,
            timestamp: 100 + seq as i64,
        };
        RecallSplit {
            users: vec![
                UserSequence {
                    user: 1,
                    behaviors: vec![
                        b(1, 0, 10),
                        b(1, 1, 11),
                        b(1, 2, 12),
                        b(1, 3, 13),
                        b(1, 4, 10),
                    ],
                },
                UserSequence {
                    user: 2,
                    behaviors: vec![b(2, 0, 11), b(2, 1, 12), b(2, 2, 14)],
                },
            ],
            catalog: [10, 11, 12, 13, 14, 15]
                .into_iter()
                .map(|i| (i, ItemFeatures::default()))
                .collect(),
            skipped_users: 1,
        }
    }

    #[test]
    fn writes_recbole_benchmark_files_of_the_split() {
        let dir = tempfile::tempdir().unwrap();
        let c = write_recbole(&split(), dir.path(), "d", 2).unwrap();
        let read = |f: &str| std::fs::read_to_string(dir.path().join(f)).unwrap();
        assert_eq!(
            read("d.train.inter"),
            format!("{HEADER}\n1\t10\t11\n1\t10 11\t12\n")
        );
        assert_eq!(
            read("d.valid.inter"),
            format!("{HEADER}\n1\t11 12\t13\n2\t11\t12\n")
        );
        assert_eq!(
            read("d.test.inter"),
            format!("{HEADER}\n1\t12 13\t10\n2\t11 12\t14\n")
        );
        assert_eq!(read("d.item"), "item_id:token\n10\n11\n12\n13\n14\n15\n");
        assert_eq!(
            c,
            Counts {
                users: 2,
                skipped_users: 1,
                items: 6,
                train_rows: 2,
                valid_rows: 2,
                test_rows: 2,
                max_len: 2
            }
        );
        assert!(read("meta.json").contains("\"train_rows\": 2"));
    }
}
