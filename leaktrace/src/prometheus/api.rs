//! Prometheus's HTTP API answers, parsed: a `query_range` result (a matrix) or the error it
//! carries. Every error is one line that says what was wrong.
use std::collections::BTreeMap;

use serde::Deserialize;

use crate::util::selector;

/// One time series: its labels (`__name__` included when the query keeps it) and its points.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub labels: BTreeMap<String, String>,
    /// (milliseconds since the epoch, bytes), in time order.
    pub points: Vec<(i64, u64)>,
}

/// A successful answer.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Answer {
    pub series: Vec<Series>,
    /// Warnings and infos Prometheus attached (e.g. a partial answer).
    pub warnings: Vec<String>,
}

#[derive(Deserialize)]
struct Envelope {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    warnings: Vec<String>,
    #[serde(default)]
    infos: Vec<String>,
}

#[derive(Deserialize)]
struct Data {
    #[serde(rename = "resultType")]
    result_type: String,
    result: serde_json::Value,
}

#[derive(Deserialize)]
struct MatrixSeries {
    #[serde(default)]
    metric: BTreeMap<String, String>,
    #[serde(default)]
    values: Vec<(f64, String)>,
    /// Native histograms: not a memory size.
    #[serde(default)]
    histograms: Option<serde_json::Value>,
}

/// Text from a server, on one line and not too long for a message.
pub fn one_line(s: &str, max: usize) -> String {
    let flat: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() > max {
        format!("{}…", flat.chars().take(max).collect::<String>())
    } else {
        flat
    }
}

/// The answer to `query_range`, given the HTTP status and body. Values must be memory sizes:
/// finite numbers ≥ 0 (rounded to a byte).
pub fn parse_range(status: u16, body: &str) -> Result<Answer, String> {
    let env: Envelope = match serde_json::from_str(body) {
        Ok(e) => e,
        Err(_) if !(200..300).contains(&status) => {
            return Err(format!("HTTP {status}: {}", one_line(body, 200)));
        }
        Err(e) => {
            return Err(format!("not a Prometheus API answer ({e}): {}", one_line(body, 120)));
        }
    };
    if env.status != "success" {
        let kind = env.error_type.unwrap_or_else(|| format!("HTTP {status}"));
        let what = env.error.map_or_else(|| one_line(body, 200), |e| one_line(&e, 300));
        return Err(format!("Prometheus refused the query ({kind}): {what}"));
    }
    let data = env.data.ok_or("a successful answer without `data`")?;
    if data.result_type != "matrix" {
        return Err(format!(
            "the query gave a {} where a range query gives a matrix of series",
            data.result_type
        ));
    }
    let result: Vec<MatrixSeries> =
        serde_json::from_value(data.result).map_err(|e| format!("the matrix is not as Prometheus writes it: {e}"))?;
    let mut series = Vec::with_capacity(result.len());
    for s in result {
        if s.values.is_empty() && s.histograms.is_some() {
            return Err(format!(
                "{} is a native histogram, not a memory size",
                selector(&s.metric)
            ));
        }
        let mut points = Vec::with_capacity(s.values.len());
        for (t, v) in &s.values {
            let bytes = v.trim().parse::<f64>().ok().filter(|b| b.is_finite() && *b >= 0.0);
            let Some(bytes) = bytes else {
                return Err(format!(
                    "{} at {}: value {v:?} is not a memory size (a finite number of bytes, at least 0)",
                    selector(&s.metric),
                    crate::report::render::utc((t * 1000.0).max(0.0) as u64)
                ));
            };
            points.push(((t * 1000.0).round() as i64, bytes.round() as u64));
        }
        series.push(Series {
            labels: s.metric,
            points,
        });
    }
    let mut warnings = env.warnings;
    warnings.extend(env.infos);
    Ok(Answer { series, warnings })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Answers as Prometheus 2.42 (Debian's package) wrote them. A process-exporter group whose
    /// process exited at 1796088427 (the group stays, at 0), over 6 steps of 1 s:
    const MATRIX: &str = r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"__name__":"namedprocess_namegroup_memory_bytes","groupname":"hold","instance":"127.0.0.1:19256","job":"process","memtype":"resident"},"values":[[1796088424,"22818816"],[1796088425,"22818816"],[1796088426,"22818816"],[1796088427,"0"],[1796088428,"0"],[1796088429,"0"]]}]}}"#;
    /// `vector(0)/0`: NaN at every step, no labels.
    const NAN: &str = r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1796089335,"NaN"],[1796089336,"NaN"],[1796089337,"NaN"],[1796089338,"NaN"]]}]}}"#;
    /// A metric nobody has.
    const EMPTY: &str = r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#;
    /// `rate(up[1m]` (HTTP 400).
    const PARSE_ERROR: &str =
        r#"{"status":"error","errorType":"bad_data","error":"1:12: parse error: unclosed left parenthesis"}"#;
    /// `start=0&end=100000&step=1` (HTTP 400): what splitting the range avoids.
    const TOO_MANY_POINTS: &str = r#"{"status":"error","errorType":"bad_data","error":"exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)"}"#;

    #[test]
    fn a_matrix() {
        let a = parse_range(200, MATRIX).unwrap();
        assert_eq!(a.series.len(), 1);
        let s = &a.series[0];
        assert_eq!(s.labels["groupname"], "hold");
        assert_eq!(s.labels["__name__"], "namedprocess_namegroup_memory_bytes");
        assert_eq!(s.points.len(), 6);
        assert_eq!(s.points[0], (1_796_088_424_000, 22_818_816));
        assert_eq!(s.points[3], (1_796_088_427_000, 0));
        assert!(a.warnings.is_empty());
        assert_eq!(
            selector(&s.labels),
            r#"namedprocess_namegroup_memory_bytes{groupname="hold", instance="127.0.0.1:19256", job="process", memtype="resident"}"#
        );
        assert!(parse_range(200, EMPTY).unwrap().series.is_empty());
        // Fractional times and values other servers (or recording rules) may give.
        let a = parse_range(
            200,
            r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"job":"x"},"values":[[1767225600.5,"1.048576e+07"],[1767225601.5,"1024.4"]]}]}}"#,
        )
        .unwrap();
        assert_eq!(
            a.series[0].points,
            vec![(1_767_225_600_500, 10_485_760), (1_767_225_601_500, 1024)]
        );
    }

    #[test]
    fn empty_and_warned() {
        let a = parse_range(
            200,
            r#"{"status":"success","data":{"resultType":"matrix","result":[]},"warnings":["partial"],"infos":["PromQL info: x"]}"#,
        )
        .unwrap();
        assert!(a.series.is_empty());
        assert_eq!(a.warnings, vec!["partial", "PromQL info: x"]);
    }

    #[test]
    fn errors_are_one_clear_line() {
        // A PromQL error, as Prometheus answers it (HTTP 400).
        assert_eq!(
            parse_range(400, PARSE_ERROR).unwrap_err(),
            "Prometheus refused the query (bad_data): 1:12: parse error: unclosed left parenthesis"
        );
        assert!(
            parse_range(400, TOO_MANY_POINTS)
                .unwrap_err()
                .contains("exceeded maximum resolution of 11,000 points")
        );
        assert_eq!(
            parse_range(200, NAN).unwrap_err(),
            r#"{} at 2026-12-01 01:42:15: value "NaN" is not a memory size (a finite number of bytes, at least 0)"#
        );
        // Not Prometheus: a proxy's page.
        let e = parse_range(404, "<html>\n<body>404 page not found</body>\n</html>\n").unwrap_err();
        assert_eq!(e, "HTTP 404: <html> <body>404 page not found</body> </html>");
        let e = parse_range(200, "hello").unwrap_err();
        assert!(e.starts_with("not a Prometheus API answer"), "{e}");
        // An instant vector where a matrix belongs.
        let e = parse_range(
            200,
            r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#,
        )
        .unwrap_err();
        assert!(e.contains("vector"), "{e}");
        // A value that is not a size: infinite, negative, or not a number at all.
        for v in ["+Inf", "-Inf", "-1", "abc", ""] {
            let body = format!(
                r#"{{"status":"success","data":{{"resultType":"matrix","result":[{{"metric":{{"job":"x"}},"values":[[1767225600,"1"],[1767225601,"{v}"]]}}]}}}}"#
            );
            let e = parse_range(200, &body).unwrap_err();
            assert_eq!(
                e,
                format!(
                    r#"{{job="x"}} at 2026-01-01 00:00:01: value "{v}" is not a memory size (a finite number of bytes, at least 0)"#
                )
            );
            assert_eq!(e.lines().count(), 1);
        }
        // A value that is not a string.
        let e = parse_range(
            200,
            r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1,2]]}]}}"#,
        )
        .unwrap_err();
        assert!(e.starts_with("the matrix is not as Prometheus writes it"), "{e}");
    }
}
