//! introspect-bench's summary: one table of figure, measured, target and
//! verdict, what limits the missed targets, and what else the run saw.

use std::fmt::Write as _;
use std::time::Instant;

#[derive(Default)]
pub struct Summary {
    rows: Vec<[String; 4]>,
    /// What limits the missed targets, from the run's own figures.
    pub limits: Vec<String>,
    /// Other things the run saw.
    pub notes: Vec<String>,
    /// Figures that failed, with why.
    pub failed: Vec<String>,
}

impl Summary {
    /// One table row: what, the measured figure, the target, the verdict.
    pub fn row(&mut self, what: &str, measured: String, target: &str, verdict: String) {
        self.rows.push([what.to_string(), measured, target.to_string(), verdict]);
    }
    pub fn render(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(o, "==================================== SUMMARY ====================================");
        let w = [0, 1, 2].map(|i| self.rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0));
        let pad = |s: &str, n: usize| format!("{s}{}", " ".repeat(n.saturating_sub(s.chars().count())));
        let _ = writeln!(o, "{} | {} | {} | verdict", pad("figure", w[0]), pad("measured", w[1]), pad("target", w[2]));
        let _ = writeln!(o, "{}", "-".repeat(w[0] + w[1] + w[2] + 20));
        for r in &self.rows {
            let _ = writeln!(o, "{} | {} | {} | {}", pad(&r[0], w[0]), pad(&r[1], w[1]), pad(&r[2], w[2]), r[3]);
        }
        if !self.failed.is_empty() {
            let _ = writeln!(o, "NOT MEASURED: {}", self.failed.join(", "));
        }
        if !self.limits.is_empty() {
            let _ = writeln!(o, "\nWhat limits the missed targets (from this run's figures):");
            for l in &self.limits {
                let _ = writeln!(o, "- {l}");
            }
        }
        if !self.notes.is_empty() {
            let _ = writeln!(o, "\nAlso seen:");
            for l in &self.notes {
                let _ = writeln!(o, "- {l}");
            }
        }
        o
    }
}

/// "met", or by how much it is missed.
pub fn verdict_min(v: f64, target: f64, unit: &str) -> String {
    if v >= target {
        "met".into()
    } else {
        format!("NOT met: {:.1}% below ({:.3}{unit} short)", (1.0 - v / target) * 100.0, target - v)
    }
}
pub fn verdict_max(v: f64, target: f64, unit: &str) -> String {
    if v <= target {
        "met".into()
    } else {
        format!("NOT met: {:.0}% over (+{:.2}{unit})", (v / target - 1.0) * 100.0, v - target)
    }
}

/// Prints how figure `name` went and records a failure.
pub fn report<T>(name: &str, t: Instant, r: &Result<T, String>, sum: &mut Summary) {
    match r {
        Ok(_) => println!("(figure {name}: {:.1} s)", t.elapsed().as_secs_f64()),
        Err(e) => {
            println!("figure {name} FAILED after {:.1} s: {e}", t.elapsed().as_secs_f64());
            sum.failed.push(format!("{name} ({e})"));
        }
    }
}
