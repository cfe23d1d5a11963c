//! The report: criterion's results as a table, and BENCHMARKS.md's sections.

use std::fmt::Write as _;


/// Turns criterion's text output into a table: each `name  time: [low median high]`
/// (the name may be on the line before).
pub(crate) fn criterion_table(output: String) -> String {
    let mut table = String::from("| benchmark | median time |\n|---|---:|\n");
    let mut previous = "";
    for line in output.lines() {
        if let Some((name, rest)) = line.split_once("time:") {
            let name = if name.trim().is_empty() { previous.trim() } else { name.trim() };
            let times: Vec<&str> = rest.trim().trim_matches(['[', ']']).split_whitespace().collect();
            if let [_, _, median, unit, ..] = times.as_slice() {
                let _ = writeln!(table, "| {name} | {median} {unit} |");
            }
        }
        previous = line;
    }
    format!(
        "## Pure crate (criterion)\n\n`cargo bench -p layercache-core --bench validation`: the validation and \
         key naming every command runs before it touches a key, without Redis.\n\n{table}"
    )
}
