//! Triton-style ASCII tables for the startup log.

/// Renders a table with a header row; cells wider than 80 characters wrap.
pub fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    const MAX: usize = 80;
    let cols = header.len();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(cols) {
            widths[i] = widths[i].max(cell.chars().count().min(MAX));
        }
    }
    let rule: String = widths
        .iter()
        .map(|w| format!("+{}", "-".repeat(w + 2)))
        .collect::<String>()
        + "+";
    let line = |cells: &[String]| -> String {
        // Wrap every cell to MAX characters, then print as many physical lines as needed.
        let wrapped: Vec<Vec<String>> = cells
            .iter()
            .map(|c| {
                let chars: Vec<char> = c.chars().collect();
                if chars.is_empty() {
                    vec![String::new()]
                } else {
                    chars.chunks(MAX).map(|ch| ch.iter().collect()).collect()
                }
            })
            .collect();
        let height = wrapped.iter().map(Vec::len).max().unwrap_or(1);
        (0..height)
            .map(|h| {
                let mut s = String::new();
                for (i, w) in widths.iter().enumerate() {
                    let cell = wrapped
                        .get(i)
                        .and_then(|c| c.get(h))
                        .map(String::as_str)
                        .unwrap_or("");
                    s.push_str(&format!("| {cell:<w$} "));
                }
                s + "|"
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    let mut out = vec![
        rule.clone(),
        line(&header.iter().map(|h| h.to_string()).collect::<Vec<_>>()),
        rule.clone(),
    ];
    for row in rows {
        out.push(line(row));
    }
    out.push(rule);
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_like_triton() {
        let t = render(
            &["Model", "Version", "Status"],
            &[vec!["simple".into(), "1".into(), "READY".into()]],
        );
        assert_eq!(
            t,
            "+--------+---------+--------+\n| Model  | Version | Status |\n+--------+---------+--------+\n| simple | 1       | READY  |\n+--------+---------+--------+"
        );
    }

    #[test]
    fn wraps_long_cells() {
        let long = "x".repeat(100);
        let t = render(&["A"], &[vec![long]]);
        assert_eq!(t.lines().count(), 6);
    }
}
