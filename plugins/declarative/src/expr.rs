//! The guard and condition language: comparisons, `and`/`or`/`not`, `in`, literals and field
//! paths, over a JSON context. No calls, no loops, no assignment: evaluation visits each node
//! once, and parsing bounds the source length, the number of tokens and the nesting depth, so
//! hostile input can neither recurse without bound nor run long.
//!
//! ```text
//! amount >= 1000 and stage != "lost"
//! not (contact == null) or priority in ["high", "urgent"]
//! record.amount > 0 && payload.source == 'web'
//! ```

use std::fmt;

use serde_json::Value;

use objectos_kernel::model::problems::Vocabulary;

fn type_name(v: &Value) -> &'static str {
    Vocabulary::Plain.kind(v)
}

/// Longest expression source, in bytes.
pub const MAX_SOURCE: usize = 1024;
/// Most tokens in one expression.
pub const MAX_TOKENS: usize = 256;
/// Deepest nesting of parentheses, `not` and lists.
pub const MAX_DEPTH: usize = 32;

/// A parsed expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// A literal value.
    Lit(Value),
    /// A dotted field path.
    Path(Vec<String>),
    /// A list literal.
    List(Vec<Expr>),
    /// `not e`.
    Not(Box<Expr>),
    /// `a and b`.
    And(Box<Expr>, Box<Expr>),
    /// `a or b`.
    Or(Box<Expr>, Box<Expr>),
    /// A comparison.
    Cmp(Box<Expr>, Op, Box<Expr>),
}

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `in`
    In,
}

/// A parse or evaluation error, with the byte offset for parse errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExprError {
    /// Byte offset in the source, when known.
    pub at: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ExprError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.at {
            Some(at) => write!(f, "at character {}: {}", at + 1, self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for ExprError {}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Num(f64),
    Str(String),
    Ident(String),
    Op(Op),
    And,
    Or,
    Not,
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    Dot,
}

fn err(at: usize, message: impl Into<String>) -> ExprError {
    ExprError { at: Some(at), message: message.into() }
}

fn lex(src: &str) -> Result<Vec<(usize, Tok)>, ExprError> {
    if src.len() > MAX_SOURCE {
        return Err(ExprError { at: None, message: format!("the expression is {} bytes; at most {MAX_SOURCE} are allowed", src.len()) });
    }
    let chars: Vec<(usize, char)> = src.char_indices().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let (at, c) = chars[i];
        if out.len() > MAX_TOKENS {
            return Err(err(at, format!("more than {MAX_TOKENS} tokens")));
        }
        let next = chars.get(i + 1).map(|(_, c)| *c);
        let two = |t: Tok| (t, 2);
        let (tok, len) = match (c, next) {
            (c, _) if c.is_whitespace() => {
                i += 1;
                continue;
            }
            ('=', Some('=')) => two(Tok::Op(Op::Eq)),
            ('!', Some('=')) => two(Tok::Op(Op::Ne)),
            ('<', Some('=')) => two(Tok::Op(Op::Le)),
            ('>', Some('=')) => two(Tok::Op(Op::Ge)),
            ('&', Some('&')) => two(Tok::And),
            ('|', Some('|')) => two(Tok::Or),
            ('<', _) => (Tok::Op(Op::Lt), 1),
            ('>', _) => (Tok::Op(Op::Gt), 1),
            ('!', _) => (Tok::Not, 1),
            ('(', _) => (Tok::LParen, 1),
            (')', _) => (Tok::RParen, 1),
            ('[', _) => (Tok::LBracket, 1),
            (']', _) => (Tok::RBracket, 1),
            (',', _) => (Tok::Comma, 1),
            ('.', _) => (Tok::Dot, 1),
            ('=', _) => return Err(err(at, "`=` is not an operator; compare with `==`")),
            ('"' | '\'', _) => {
                let quote = c;
                let mut s = String::new();
                let mut j = i + 1;
                loop {
                    let Some(&(_, ch)) = chars.get(j) else { return Err(err(at, "this string is never closed")) };
                    match ch {
                        '\\' => {
                            let Some(&(_, esc)) = chars.get(j + 1) else { return Err(err(at, "this string is never closed")) };
                            s.push(match esc {
                                'n' => '\n',
                                't' => '\t',
                                other => other,
                            });
                            j += 2;
                        }
                        ch if ch == quote => break,
                        ch => {
                            s.push(ch);
                            j += 1;
                        }
                    }
                }
                (Tok::Str(s), j + 1 - i)
            }
            (c, _) if c.is_ascii_digit() || (c == '-' && next.is_some_and(|n| n.is_ascii_digit())) => {
                let mut j = i + 1;
                while chars.get(j).is_some_and(|(_, ch)| ch.is_ascii_digit() || *ch == '.' || *ch == '_') {
                    j += 1;
                }
                let end = chars.get(j).map_or(src.len(), |(o, _)| *o);
                let text: String = src[at..end].chars().filter(|c| *c != '_').collect();
                let n: f64 = text.parse().map_err(|_| err(at, format!("`{}` is not a number", &src[at..end])))?;
                (Tok::Num(n), j - i)
            }
            (c, _) if c.is_alphabetic() || c == '_' => {
                let mut j = i + 1;
                while chars.get(j).is_some_and(|(_, ch)| ch.is_alphanumeric() || *ch == '_' || *ch == '-') {
                    j += 1;
                }
                let end = chars.get(j).map_or(src.len(), |(o, _)| *o);
                let word = &src[at..end];
                let tok = match word {
                    "and" => Tok::And,
                    "or" => Tok::Or,
                    "not" => Tok::Not,
                    "in" => Tok::Op(Op::In),
                    w => Tok::Ident(w.to_string()),
                };
                (tok, j - i)
            }
            (c, _) => return Err(err(at, format!("unexpected `{c}`"))),
        };
        out.push((at, tok));
        i += len;
    }
    Ok(out)
}

struct Parser {
    toks: Vec<(usize, Tok)>,
    pos: usize,
    depth: usize,
    end: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|(_, t)| t)
    }
    fn at(&self) -> usize {
        self.toks.get(self.pos).map_or(self.end, |(a, _)| *a)
    }
    fn bump(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).map(|(_, t)| t.clone());
        self.pos += 1;
        t
    }
    fn enter(&mut self) -> Result<(), ExprError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(err(self.at(), format!("nested more than {MAX_DEPTH} deep")));
        }
        Ok(())
    }

    fn or(&mut self) -> Result<Expr, ExprError> {
        let mut left = self.and()?;
        while self.peek() == Some(&Tok::Or) {
            self.bump();
            left = Expr::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, ExprError> {
        let mut left = self.not()?;
        while self.peek() == Some(&Tok::And) {
            self.bump();
            left = Expr::And(Box::new(left), Box::new(self.not()?));
        }
        Ok(left)
    }

    fn not(&mut self) -> Result<Expr, ExprError> {
        if self.peek() == Some(&Tok::Not) {
            self.bump();
            self.enter()?;
            let inner = self.not()?;
            self.depth -= 1;
            return Ok(Expr::Not(Box::new(inner)));
        }
        self.cmp()
    }

    fn cmp(&mut self) -> Result<Expr, ExprError> {
        let left = self.atom()?;
        if let Some(Tok::Op(op)) = self.peek().cloned() {
            self.bump();
            let right = self.atom()?;
            if let Some(Tok::Op(_)) = self.peek() {
                return Err(err(self.at(), "comparisons do not chain; join them with `and`"));
            }
            return Ok(Expr::Cmp(Box::new(left), op, Box::new(right)));
        }
        Ok(left)
    }

    fn atom(&mut self) -> Result<Expr, ExprError> {
        let at = self.at();
        match self.bump() {
            Some(Tok::Num(n)) => Ok(Expr::Lit(serde_json::Number::from_f64(n).map_or(Value::Null, Value::Number))),
            Some(Tok::Str(s)) => Ok(Expr::Lit(Value::String(s))),
            Some(Tok::Ident(w)) => match w.as_str() {
                "true" => Ok(Expr::Lit(Value::Bool(true))),
                "false" => Ok(Expr::Lit(Value::Bool(false))),
                "null" => Ok(Expr::Lit(Value::Null)),
                _ => {
                    let mut path = vec![w];
                    while self.peek() == Some(&Tok::Dot) {
                        self.bump();
                        match self.bump() {
                            Some(Tok::Ident(part)) => path.push(part),
                            _ => return Err(err(self.toks.get(self.pos - 1).map_or(self.end, |(a, _)| *a), "expected a field name after `.`")),
                        }
                    }
                    Ok(Expr::Path(path))
                }
            },
            Some(Tok::LParen) => {
                self.enter()?;
                let e = self.or()?;
                self.depth -= 1;
                match self.bump() {
                    Some(Tok::RParen) => Ok(e),
                    _ => Err(err(at, "this `(` is never closed")),
                }
            }
            Some(Tok::LBracket) => {
                self.enter()?;
                let mut items = Vec::new();
                if self.peek() == Some(&Tok::RBracket) {
                    self.bump();
                } else {
                    loop {
                        items.push(self.atom()?);
                        match self.bump() {
                            Some(Tok::Comma) => {}
                            Some(Tok::RBracket) => break,
                            _ => return Err(err(at, "this `[` list is never closed with `]`")),
                        }
                    }
                }
                self.depth -= 1;
                Ok(Expr::List(items))
            }
            None => Err(err(at, "the expression ends too early")),
            Some(t) => Err(err(at, format!("unexpected {}", describe(&t)))),
        }
    }
}

fn describe(t: &Tok) -> String {
    match t {
        Tok::Op(op) => format!("`{}`", op_str(*op)),
        Tok::And => "`and`".into(),
        Tok::Or => "`or`".into(),
        Tok::Not => "`not`".into(),
        Tok::RParen => "`)`".into(),
        Tok::RBracket => "`]`".into(),
        Tok::Comma => "`,`".into(),
        Tok::Dot => "`.`".into(),
        other => format!("{other:?}"),
    }
}

fn op_str(op: Op) -> &'static str {
    match op {
        Op::Eq => "==",
        Op::Ne => "!=",
        Op::Lt => "<",
        Op::Le => "<=",
        Op::Gt => ">",
        Op::Ge => ">=",
        Op::In => "in",
    }
}

impl Expr {
    /// Parse `src`.
    pub fn parse(src: &str) -> Result<Expr, ExprError> {
        let toks = lex(src)?;
        if toks.is_empty() {
            return Err(ExprError { at: None, message: "the expression is empty".into() });
        }
        let mut p = Parser { toks, pos: 0, depth: 0, end: src.len() };
        let e = p.or()?;
        if p.pos < p.toks.len() {
            let at = p.at();
            let t = p.bump().map(|t| describe(&t)).unwrap_or_default();
            return Err(err(at, format!("unexpected {t} after a complete expression")));
        }
        Ok(e)
    }

    /// Every field path the expression reads.
    pub fn paths(&self) -> Vec<&[String]> {
        let mut out = Vec::new();
        let mut stack = vec![self];
        while let Some(e) = stack.pop() {
            match e {
                Expr::Path(p) => out.push(p.as_slice()),
                Expr::Lit(_) => {}
                Expr::List(items) => stack.extend(items),
                Expr::Not(a) => stack.push(a),
                Expr::And(a, b) | Expr::Or(a, b) | Expr::Cmp(a, _, b) => {
                    stack.push(a);
                    stack.push(b);
                }
            }
        }
        out
    }

    /// Every literal compared with a field path by `==`, `!=` or `in` (`priority == 'urgent'`,
    /// `stage in ['won', 'lost']`), with the path: for checking against the field's values.
    pub fn compared_literals(&self) -> Vec<(&[String], &Value)> {
        let mut out = Vec::new();
        let mut stack = vec![self];
        while let Some(e) = stack.pop() {
            match e {
                Expr::Cmp(a, op, b) => {
                    match (op, &**a, &**b) {
                        // `field in [...]`: each item is a value the field is compared with
                        // (`in` with text on the right is a substring test: not a value).
                        (Op::In, Expr::Path(p), Expr::List(items)) => out.extend(items.iter().filter_map(|i| if let Expr::Lit(v) = i { Some((p.as_slice(), v)) } else { None })),
                        (Op::Eq | Op::Ne, Expr::Path(p), Expr::Lit(v)) | (Op::Eq | Op::Ne, Expr::Lit(v), Expr::Path(p)) => out.push((p.as_slice(), v)),
                        _ => {}
                    }
                    stack.push(a);
                    stack.push(b);
                }
                Expr::Lit(_) | Expr::Path(_) => {}
                Expr::List(items) => stack.extend(items),
                Expr::Not(a) => stack.push(a),
                Expr::And(a, b) | Expr::Or(a, b) => {
                    stack.push(a);
                    stack.push(b);
                }
            }
        }
        out
    }

    /// Evaluate to a value over `ctx` (a missing path is `null`).
    pub fn eval(&self, ctx: &Value) -> Result<Value, ExprError> {
        Ok(match self {
            Expr::Lit(v) => v.clone(),
            Expr::Path(p) => {
                let mut v = ctx;
                for part in p {
                    v = match v.get(part) {
                        Some(x) => x,
                        None => return Ok(Value::Null),
                    };
                }
                v.clone()
            }
            Expr::List(items) => Value::Array(items.iter().map(|i| i.eval(ctx)).collect::<Result<_, _>>()?),
            Expr::Not(a) => Value::Bool(!truthy(&a.eval(ctx)?)),
            Expr::And(a, b) => Value::Bool(truthy(&a.eval(ctx)?) && truthy(&b.eval(ctx)?)),
            Expr::Or(a, b) => Value::Bool(truthy(&a.eval(ctx)?) || truthy(&b.eval(ctx)?)),
            Expr::Cmp(a, op, b) => Value::Bool(compare(&a.eval(ctx)?, *op, &b.eval(ctx)?)?),
        })
    }

    /// Evaluate as a condition.
    pub fn test(&self, ctx: &Value) -> Result<bool, ExprError> {
        self.eval(ctx).map(|v| truthy(&v))
    }
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

fn equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

fn compare(a: &Value, op: Op, b: &Value) -> Result<bool, ExprError> {
    let order = |a: &Value, b: &Value| -> Result<std::cmp::Ordering, ExprError> {
        match (a, b) {
            (Value::Number(x), Value::Number(y)) => x.as_f64().partial_cmp(&y.as_f64()).ok_or_else(|| ExprError { at: None, message: "numbers that do not compare".into() }),
            (Value::String(x), Value::String(y)) => Ok(x.cmp(y)),
            (Value::Null, _) | (_, Value::Null) => Err(ExprError { at: None, message: "a missing (null) value cannot be ordered".into() }),
            _ => Err(ExprError { at: None, message: format!("cannot order {} against {}", type_name(a), type_name(b)) }),
        }
    };
    Ok(match op {
        Op::Eq => equal(a, b),
        Op::Ne => !equal(a, b),
        Op::Lt => order(a, b)?.is_lt(),
        Op::Le => order(a, b)?.is_le(),
        Op::Gt => order(a, b)?.is_gt(),
        Op::Ge => order(a, b)?.is_ge(),
        Op::In => match b {
            Value::Array(items) => items.iter().any(|i| equal(a, i)),
            Value::String(s) => a.as_str().is_some_and(|x| s.contains(x)),
            other => return Err(ExprError { at: None, message: format!("`in` needs a list or a text on its right, not {}", type_name(other)) }),
        },
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn evaluates_comparisons_and_logic() {
        let ctx = json!({"amount": 1500, "stage": "proposal", "contact": null, "tags": ["vip"], "record": {"n": 2}});
        let t = |s: &str| Expr::parse(s).unwrap().test(&ctx).unwrap();
        assert!(t("amount >= 1000 and stage != 'lost'"));
        assert!(t("not (contact != null) || amount < 0"));
        assert!(t("stage in [\"proposal\", \"won\"]"));
        assert!(t("'vip' in tags"));
        assert!(t("record.n == 2.0"));
        assert!(!t("missing.field == 1"));
        assert!(t("missing == null"));
        assert!(Expr::parse("contact > 1").unwrap().test(&ctx).is_err(), "ordering null is an error, not false");
        assert!(Expr::parse("stage > 1").unwrap().test(&ctx).is_err());
    }

    #[test]
    fn parse_errors_say_where() {
        for (src, want) in [
            ("amount = 1", "at character 8: `=` is not an operator"),
            ("(a == 1", "at character 1: this `(` is never closed"),
            ("a == 'x", "at character 6: this string is never closed"),
            ("a == 1 b", "unexpected"),
            ("a < b < c", "comparisons do not chain"),
            ("", "empty"),
            ("a.", "expected a field name"),
            ("a == #", "unexpected `#`"),
        ] {
            let e = Expr::parse(src).unwrap_err().to_string();
            assert!(e.contains(want), "{src:?}: {e}");
        }
    }

    #[test]
    fn hostile_input_is_bounded() {
        let deep = format!("{}a{}", "(".repeat(10_000), ")".repeat(10_000));
        assert!(Expr::parse(&deep).unwrap_err().to_string().contains("at most"), "long source refused");
        let nested = format!("{}a{}", "(".repeat(40), ")".repeat(40));
        assert!(Expr::parse(&nested).unwrap_err().to_string().contains("nested more than"));
        let nots = format!("{}a", "not ".repeat(100));
        assert!(Expr::parse(&nots).unwrap_err().to_string().contains("nested more than"));
        let many = vec!["a == 1"; 70].join(" and ");
        assert!(Expr::parse(&many).unwrap_err().to_string().contains("tokens"));
    }
}
