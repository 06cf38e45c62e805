//! Message templates per policy and kind, Chinese by default, parsed once at
//! config time into literal and variable parts.
//!
//! Variables: `{recipient_name}`, `{member_name}`, `{org}`, `{missed}`,
//! `{ticket_title}`, `{deadline}`, `{policy}`, `{kind}` (提醒/预警/督办),
//! `{step}`, `{subject}`; in a digest template also `{count}` and
//! `{subjects}` (one `item` line per merged notification). `{{` and `}}` are
//! literal braces. A value that is unknown falls back to the id (names) or to
//! nothing.

use std::collections::HashMap;

use redcloud_engine::notify::Envelope;

use super::config::NotifyKind;

/// A template variable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Var {
    /// The recipient's name (or id).
    RecipientName,
    /// The subject member's name (or id).
    MemberName,
    /// The subject's org name (or id).
    Org,
    /// Missed working days (streaks).
    Missed,
    /// The ticket's title (or id).
    TicketTitle,
    /// The ticket's deadline, `YYYY-MM-DD HH:MM`.
    Deadline,
    /// The policy name.
    Policy,
    /// 提醒, 预警 or 督办.
    Kind,
    /// The step number.
    Step,
    /// The subject id (`member:<id>`, `ticket:<id>`).
    Subject,
    /// Digests: how many notifications.
    Count,
    /// Digests: the item lines.
    Subjects,
}

const VARS: [(&str, Var); 12] = [
    ("recipient_name", Var::RecipientName),
    ("member_name", Var::MemberName),
    ("org", Var::Org),
    ("missed", Var::Missed),
    ("ticket_title", Var::TicketTitle),
    ("deadline", Var::Deadline),
    ("policy", Var::Policy),
    ("kind", Var::Kind),
    ("step", Var::Step),
    ("subject", Var::Subject),
    ("count", Var::Count),
    ("subjects", Var::Subjects),
];

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Lit(String),
    Var(Var),
}

/// A parsed template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

impl Template {
    /// Parses `s`; `{count}` and `{subjects}` only where `digest` is true.
    pub fn parse(s: &str, digest: bool) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut chars = s.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    lit.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    lit.push('}');
                }
                '{' => {
                    let mut name = String::new();
                    loop {
                        match chars.next() {
                            Some('}') => break,
                            Some(x) => name.push(x),
                            None => return Err(format!("unclosed `{{{name}`")),
                        }
                    }
                    let var = VARS
                        .iter()
                        .find(|(n, _)| *n == name)
                        .map(|(_, v)| *v)
                        .ok_or_else(|| {
                            format!(
                                "unknown variable `{{{name}}}` (known: {})",
                                VARS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
                            )
                        })?;
                    if !digest && matches!(var, Var::Count | Var::Subjects) {
                        return Err(format!("`{{{name}}}` is only known in a `digest` template"));
                    }
                    if !lit.is_empty() {
                        parts.push(Part::Lit(std::mem::take(&mut lit)));
                    }
                    parts.push(Part::Var(var));
                }
                '}' => return Err("unmatched `}` (write `}}` for a brace)".into()),
                c => lit.push(c),
            }
        }
        if !lit.is_empty() {
            parts.push(Part::Lit(lit));
        }
        Ok(Template { parts })
    }

    fn builtin(s: &str, digest: bool) -> Template {
        Template::parse(s, digest).expect("built-in templates parse")
    }

    /// Renders into `out`; `digest` gives `{count}` and `{subjects}`.
    pub fn render(&self, env: &Envelope, digest: Option<(usize, &str)>, out: &mut String) {
        for p in &self.parts {
            match p {
                Part::Lit(s) => out.push_str(s),
                Part::Var(v) => push_var(*v, env, digest, out),
            }
        }
    }

    /// Renders to a new string.
    pub fn to_string(&self, env: &Envelope, digest: Option<(usize, &str)>) -> String {
        let mut s = String::new();
        self.render(env, digest, &mut s);
        s
    }
}

fn strip(id: &str) -> &str {
    id.split_once(':').map_or(id, |(_, rest)| rest)
}

/// `2026-03-10T00:00:00+08:00` -> `2026-03-10 00:00`.
fn short_time(s: &str) -> String {
    if s.len() >= 16 && s.as_bytes()[10] == b'T' {
        format!("{} {}", &s[..10], &s[11..16])
    } else {
        s.to_string()
    }
}

fn push_var(v: Var, env: &Envelope, digest: Option<(usize, &str)>, out: &mut String) {
    use std::fmt::Write;
    let n = &env.notification;
    match v {
        Var::RecipientName => out.push_str(
            env.recipient_name
                .as_deref()
                .unwrap_or_else(|| strip(&n.recipient)),
        ),
        Var::MemberName => out.push_str(
            env.subject_name
                .as_deref()
                .unwrap_or_else(|| strip(&n.subject)),
        ),
        Var::Org => out.push_str(env.org_name.as_deref().or(env.org.as_deref()).unwrap_or("")),
        Var::Missed => {
            let _ = write!(out, "{}", n.missed.unwrap_or(0));
        }
        Var::TicketTitle => out.push_str(
            env.ticket_title
                .as_deref()
                .unwrap_or_else(|| strip(&n.subject)),
        ),
        Var::Deadline => out.push_str(&short_time(env.deadline.as_deref().unwrap_or(""))),
        Var::Policy => out.push_str(&n.policy),
        Var::Kind => out.push_str(match n.kind.as_str() {
            "reminder" => "提醒",
            "warning" => "预警",
            _ => "督办",
        }),
        Var::Step => {
            let _ = write!(out, "{}", n.step);
        }
        Var::Subject => out.push_str(&n.subject),
        Var::Count => {
            let _ = write!(out, "{}", digest.map_or(1, |d| d.0));
        }
        Var::Subjects => out.push_str(digest.map_or("", |d| d.1)),
    }
}

/// The four templates of one policy and kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TemplateSet {
    /// Title (push title, robot heading).
    pub title: Template,
    /// Text of a single notification.
    pub body: Template,
    /// One line of a digest.
    pub item: Template,
    /// Text of a digest (`{count}`, `{subjects}`).
    pub digest: Template,
    /// SMS template code, overriding the channel's.
    pub sms_template: Option<String>,
}

/// Overrides of some of a [`TemplateSet`]'s fields (from the config).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TemplateOverride {
    /// Title.
    pub title: Option<Template>,
    /// Body.
    pub body: Option<Template>,
    /// Item line.
    pub item: Option<Template>,
    /// Digest text.
    pub digest: Option<Template>,
    /// SMS template code.
    pub sms_template: Option<String>,
}

/// A resolved set, borrowing from [`Templates`].
#[derive(Clone, Copy, Debug)]
pub struct Resolved<'a> {
    /// Title.
    pub title: &'a Template,
    /// Body.
    pub body: &'a Template,
    /// Item line.
    pub item: &'a Template,
    /// Digest text.
    pub digest: &'a Template,
    /// SMS template code, if overridden.
    pub sms_template: Option<&'a str>,
}

/// Built-in templates (by subject type and kind) and the config's overrides.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Templates {
    builtin: [[TemplateSet; 3]; 2],
    overrides: HashMap<(String, NotifyKind), TemplateOverride>,
}

fn set(title: &str, body: &str, item: &str, digest: &str) -> TemplateSet {
    TemplateSet {
        title: Template::builtin(title, false),
        body: Template::builtin(body, false),
        item: Template::builtin(item, false),
        digest: Template::builtin(digest, true),
        sms_template: None,
    }
}

impl Templates {
    /// The built-in Chinese templates, no overrides.
    pub fn builtin() -> Templates {
        // Lane order: escalation, warning, reminder.
        let member = [
            set(
                "督办通知",
                "{recipient_name}：{org}的{member_name}已连续{missed}个工作日未完成每日学习，请督促。",
                "{member_name}（{org}）连续{missed}个工作日未完成",
                "{recipient_name}：以下{count}名党员未按时完成每日学习，请督促：\n{subjects}",
            ),
            set(
                "预警通知",
                "{recipient_name}：{member_name}（{org}）第{step}级预警。",
                "{member_name}（{org}）",
                "{recipient_name}：{count}条预警：\n{subjects}",
            ),
            set(
                "学习提醒",
                "{recipient_name}同志，您已连续{missed}个工作日未完成每日学习，请及时完成。",
                "{member_name}：连续{missed}个工作日未完成",
                "{recipient_name}，您有{count}条学习提醒：\n{subjects}",
            ),
        ];
        let ticket = [
            set(
                "工单督办",
                "{recipient_name}：工单“{ticket_title}”（{org}）已超过办结期限（{deadline}），请督办。",
                "“{ticket_title}”（{org}，期限{deadline}）",
                "{recipient_name}：以下{count}件工单已超期，请督办：\n{subjects}",
            ),
            set(
                "工单即将到期",
                "{recipient_name}：工单“{ticket_title}”（{org}）将于{deadline}到期，请及时办结。",
                "“{ticket_title}”（{org}，{deadline}到期）",
                "{recipient_name}：以下{count}件工单即将到期，请及时办结：\n{subjects}",
            ),
            set(
                "工单提醒",
                "{recipient_name}：工单“{ticket_title}”（{org}）请及时办理，期限{deadline}。",
                "“{ticket_title}”（{org}）",
                "{recipient_name}：{count}件工单提醒：\n{subjects}",
            ),
        ];
        Templates {
            builtin: [member, ticket],
            overrides: HashMap::new(),
        }
    }

    /// Sets the overrides of `policy` and `kind`.
    pub fn set_override(&mut self, policy: String, kind: NotifyKind, o: TemplateOverride) {
        self.overrides.insert((policy, kind), o);
    }

    /// The templates for `policy`, `kind` and the subject type.
    pub fn resolve(&self, policy: &str, kind: NotifyKind, ticket: bool) -> Resolved<'_> {
        let b = &self.builtin[usize::from(ticket)][kind.lane()];
        let o = self
            .overrides
            .get(&(policy.to_string(), kind))
            .or_else(|| self.overrides.get(&("default".to_string(), kind)));
        match o {
            None => Resolved {
                title: &b.title,
                body: &b.body,
                item: &b.item,
                digest: &b.digest,
                sms_template: None,
            },
            Some(o) => Resolved {
                title: o.title.as_ref().unwrap_or(&b.title),
                body: o.body.as_ref().unwrap_or(&b.body),
                item: o.item.as_ref().unwrap_or(&b.item),
                digest: o.digest.as_ref().unwrap_or(&b.digest),
                sms_template: o.sms_template.as_deref(),
            },
        }
    }
}

/// The template variables handed to SMS providers (`TemplateParam`), present
/// ones only.
pub fn sms_params(env: &Envelope, count: usize) -> Vec<(&'static str, String)> {
    let mut v = Vec::with_capacity(6);
    let mut put = |name: &'static str, var: Var| {
        let mut s = String::new();
        push_var(var, env, Some((count, "")), &mut s);
        if !s.is_empty() {
            v.push((name, s));
        }
    };
    put("recipient_name", Var::RecipientName);
    if env.notification.subject.starts_with("ticket:") {
        put("ticket_title", Var::TicketTitle);
        put("deadline", Var::Deadline);
    } else {
        put("member_name", Var::MemberName);
        put("missed", Var::Missed);
    }
    put("org", Var::Org);
    if count > 1 {
        put("count", Var::Count);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use redcloud_engine::notify::RenderedOwned;

    fn env() -> Envelope {
        Envelope {
            notification: RenderedOwned {
                id: "n1".into(),
                at: "2026-03-10T00:00:00+08:00".into(),
                policy: "quiz".into(),
                kind: "escalation".into(),
                step: 2,
                subject: "member:m17".into(),
                recipient: "member:lead".into(),
                missed: Some(5),
            },
            recipient_name: Some("王书记".into()),
            sms: None,
            push: None,
            org: Some("o1".into()),
            org_name: Some("一支部".into()),
            org_group: None,
            subject_name: None,
            ticket_title: None,
            deadline: None,
        }
    }

    #[test]
    fn builtin_renders_in_chinese() {
        let t = Templates::builtin();
        let r = t.resolve("quiz", NotifyKind::Escalation, false);
        assert_eq!(
            r.body.to_string(&env(), None),
            "王书记：一支部的m17已连续5个工作日未完成每日学习，请督促。"
        );
    }

    #[test]
    fn parse_rejects_unknown_and_digest_only_vars() {
        assert!(Template::parse("{nope}", false).is_err());
        assert!(Template::parse("{subjects}", false).is_err());
        assert!(Template::parse("{subjects}", true).is_ok());
        assert!(Template::parse("{org", false).is_err());
        let t = Template::parse("{{x}} {org}", false).unwrap();
        assert_eq!(t.to_string(&env(), None), "{x} 一支部");
    }
}
