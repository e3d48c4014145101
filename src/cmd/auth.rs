//! `ketch auth can-i VERB RESOURCE [NAME]` and `ketch auth whoami`, with kubectl's flags and
//! output: `can-i` asks the server with a SelfSubjectAccessReview (a
//! SelfSubjectRulesReview for `--list`) and prints `yes` (exit 0) or `no` (exit 1);
//! `whoami` prints what a SelfSubjectReview says the server took the caller for.

use anyhow::bail;
use clap::{Args, Subcommand, ValueEnum};
use ketch_api::authorization::{
    NonResourceAttributes, ResourceAttributes, SelfSubjectAccessReview,
    SelfSubjectAccessReviewSpec, SelfSubjectReview, SelfSubjectRulesReview,
    SelfSubjectRulesReviewSpec, SubjectRulesReviewStatus,
};
use ketch_api::resource::ResourceInfo;

use super::shared::{Connection, Namespace, client};
use crate::printer::render;

#[derive(Args, Debug)]
pub struct AuthArgs {
    #[command(subcommand)]
    command: AuthCommand,
}

#[derive(Subcommand, Debug)]
enum AuthCommand {
    /// Check whether an action is allowed: prints yes (exit 0) or no (exit 1)
    CanI(CanIArgs),
    /// Print the user the server takes you for, and your groups
    Whoami(WhoamiArgs),
}

#[derive(Args, Debug)]
struct CanIArgs {
    /// The verb: get, list, watch, create, update, patch, delete, deletecollection, or *
    verb: Option<String>,
    /// A resource (pods, deployments.apps, pods/NAME) or a non-resource URL (/version)
    resource: Option<String>,
    /// The object's name (also accepted as RESOURCE/NAME)
    name: Option<String>,
    #[command(flatten)]
    ns: Namespace,
    /// Ask about every namespace
    #[arg(short = 'A', long)]
    all_namespaces: bool,
    /// A subresource, e.g. log or status
    #[arg(long)]
    subresource: Option<String>,
    /// Print every action allowed in the namespace instead
    #[arg(long)]
    list: bool,
    /// With --list, leave the header out
    #[arg(long)]
    no_headers: bool,
    /// Print nothing: the exit code is the answer
    #[arg(short = 'q', long)]
    quiet: bool,
}

#[derive(Args, Debug)]
struct WhoamiArgs {
    /// Output format (a table when absent)
    #[arg(short = 'o', long, value_enum)]
    output: Option<Format>,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Yaml,
}

/// The reviews' types in the shape the client's create takes (never stored, not in the
/// resource table).
const fn review(group: &'static str, kind: &'static str, plural: &'static str) -> ResourceInfo {
    ResourceInfo {
        group,
        version: "v1",
        kind,
        plural,
        singular: "",
        short_names: &[],
        namespaced: false,
        has_status: false,
    }
}
const SSAR: ResourceInfo = review(
    ketch_api::authorization::GROUP,
    "SelfSubjectAccessReview",
    "selfsubjectaccessreviews",
);
const SSRR: ResourceInfo = review(
    ketch_api::authorization::GROUP,
    "SelfSubjectRulesReview",
    "selfsubjectrulesreviews",
);
const SSR: ResourceInfo = review(
    ketch_api::authorization::AUTHENTICATION_GROUP,
    "SelfSubjectReview",
    "selfsubjectreviews",
);

pub async fn run(conn: &Connection, args: AuthArgs) -> anyhow::Result<()> {
    match args.command {
        AuthCommand::CanI(a) => can_i(conn, a).await,
        AuthCommand::Whoami(a) => whoami(conn, a).await,
    }
}

/// The resource part of a can-i question: `pods`, `pods/NAME`, `deployments.apps`.
#[derive(Debug, PartialEq, Eq)]
struct Target {
    group: String,
    resource: String,
    name: Option<String>,
    namespaced: bool,
}

/// Resolves `RESOURCE[/NAME]` like kubectl: a known name or short name maps to its
/// group; an unknown one is asked about as typed (`widgets.example.com`), with a warning.
fn target(resource: &str, name: Option<&str>) -> anyhow::Result<(Target, Option<String>)> {
    let (res, inline_name) = match resource.split_once('/') {
        Some((r, n)) => (r, Some(n)),
        None => (resource, None),
    };
    if inline_name.is_some() && name.is_some() {
        bail!("give the name as RESOURCE/NAME or as NAME, not both");
    }
    let name = inline_name.or(name).map(str::to_string);
    if res == "*" {
        let t = Target {
            group: "*".into(),
            resource: "*".into(),
            name,
            namespaced: true,
        };
        return Ok((t, None));
    }
    match ketch_api::resource::lookup(res) {
        Some(info) => Ok((
            Target {
                group: info.group.into(),
                resource: info.plural.into(),
                name,
                namespaced: info.namespaced,
            },
            None,
        )),
        None => {
            let (r, g) = res.split_once('.').unwrap_or((res, ""));
            let warning = format!("Warning: the server doesn't have a resource type '{res}'");
            Ok((
                Target {
                    group: g.into(),
                    resource: r.into(),
                    name,
                    namespaced: true,
                },
                Some(warning),
            ))
        }
    }
}

async fn can_i(conn: &Connection, args: CanIArgs) -> anyhow::Result<()> {
    let client = client(conn).await?;
    let namespace = if args.all_namespaces {
        None
    } else {
        Some(args.ns.or_default().to_string())
    };
    if args.list {
        let review = SelfSubjectRulesReview {
            spec: SelfSubjectRulesReviewSpec {
                namespace: namespace.clone(),
            },
            ..SelfSubjectRulesReview::default()
        };
        let answer = client
            .create(&SSRR, None, &serde_json::to_value(&review)?)
            .await?;
        let answer: SelfSubjectRulesReview = serde_json::from_value(answer)?;
        let status = answer.status.unwrap_or_default();
        if !args.quiet {
            print!("{}", rules_table(&status, args.no_headers));
        }
        return Ok(());
    }
    let (Some(verb), Some(resource)) = (args.verb.as_deref(), args.resource.as_deref()) else {
        bail!("you must specify two arguments: verb resource or verb resource/resourceName");
    };
    let spec = if resource.starts_with('/') {
        if args.name.is_some() || args.subresource.is_some() {
            bail!("a non-resource URL takes no name or subresource");
        }
        SelfSubjectAccessReviewSpec {
            non_resource_attributes: Some(NonResourceAttributes {
                path: Some(resource.to_string()),
                verb: Some(verb.to_string()),
            }),
            resource_attributes: None,
        }
    } else {
        let (t, warning) = target(resource, args.name.as_deref())?;
        if let Some(w) = warning
            && !args.quiet
        {
            eprintln!("{w}");
        }
        SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                namespace: namespace.filter(|_| t.namespaced),
                verb: Some(verb.to_string()),
                group: Some(t.group),
                version: None,
                resource: Some(t.resource),
                subresource: args.subresource.clone(),
                name: t.name,
            }),
            non_resource_attributes: None,
        }
    };
    let review = SelfSubjectAccessReview {
        spec,
        ..SelfSubjectAccessReview::default()
    };
    let answer = client
        .create(&SSAR, None, &serde_json::to_value(&review)?)
        .await?;
    let answer: SelfSubjectAccessReview = serde_json::from_value(answer)?;
    let status = answer.status.unwrap_or_default();
    if !args.quiet {
        println!("{}", answer_line(&status));
    }
    if status.allowed {
        Ok(())
    } else {
        // kubectl's contract: "no" is exit status 1, with no error line.
        use std::io::Write as _;
        let _ = std::io::stdout().flush();
        std::process::exit(1);
    }
}

/// `yes`, or `no` with the reason and evaluation error when there are any (kubectl's line).
fn answer_line(s: &ketch_api::authorization::SubjectAccessReviewStatus) -> String {
    if s.allowed {
        return "yes".into();
    }
    let mut line = "no".to_string();
    for part in [&s.reason, &s.evaluation_error].into_iter().flatten() {
        if !part.is_empty() {
            line.push_str(" - ");
            line.push_str(part);
        }
    }
    line
}

fn bracketed(items: &[String]) -> String {
    format!("[{}]", items.join(" "))
}

/// kubectl's `can-i --list` table: one row per resource (`plural.group`) with its names and
/// verbs, then the non-resource URLs; rows sorted by resource.
fn rules_table(status: &SubjectRulesReviewStatus, no_headers: bool) -> String {
    let mut rows: Vec<Vec<String>> = Vec::new();
    for r in &status.resource_rules {
        for res in &r.resources {
            for g in &r.api_groups {
                let resource = if g.is_empty() {
                    res.clone()
                } else {
                    format!("{res}.{g}")
                };
                let names = bracketed(&r.resource_names);
                if let Some(row) = rows.iter_mut().find(|x| x[0] == resource && x[2] == names) {
                    // Same resource and names: one row with every verb, as kubectl compacts.
                    let mut verbs: Vec<String> = row[3]
                        .trim_matches(['[', ']'])
                        .split(' ')
                        .filter(|v| !v.is_empty())
                        .map(str::to_string)
                        .collect();
                    for v in &r.verbs {
                        if !verbs.contains(v) {
                            verbs.push(v.clone());
                        }
                    }
                    row[3] = bracketed(&verbs);
                } else {
                    rows.push(vec![resource, "[]".into(), names, bracketed(&r.verbs)]);
                }
            }
        }
    }
    rows.sort_by(|a, b| a[0].cmp(&b[0]));
    for r in &status.non_resource_rules {
        rows.push(vec![
            String::new(),
            bracketed(&r.non_resource_urls),
            "[]".into(),
            bracketed(&r.verbs),
        ]);
    }
    let table = render(
        &["Resources", "Non-Resource URLs", "Resource Names", "Verbs"],
        &rows,
    );
    if no_headers {
        table.lines().skip(1).map(|l| format!("{l}\n")).collect()
    } else {
        table
    }
}

async fn whoami(conn: &Connection, args: WhoamiArgs) -> anyhow::Result<()> {
    let client = client(conn).await?;
    let answer = client
        .create(
            &SSR,
            None,
            &serde_json::to_value(SelfSubjectReview::default())?,
        )
        .await?;
    match args.output {
        Some(Format::Json) => println!("{}", serde_json::to_string_pretty(&answer)?),
        Some(Format::Yaml) => print!("{}", serde_yaml::to_string(&answer)?),
        None => {
            let review: SelfSubjectReview = serde_json::from_value(answer)?;
            let info = review.status.unwrap_or_default().user_info;
            let mut rows = vec![vec![
                "Username".to_string(),
                info.username.unwrap_or_default(),
            ]];
            if let Some(uid) = info.uid {
                rows.push(vec!["UID".into(), uid]);
            }
            if !info.groups.is_empty() {
                rows.push(vec!["Groups".into(), bracketed(&info.groups)]);
            }
            print!("{}", render(&["ATTRIBUTE", "VALUE"], &rows));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ketch_api::authorization::{NonResourceRule, ResourceRule, SubjectAccessReviewStatus};

    #[test]
    fn targets_resolve_like_kubectl() {
        let (t, w) = target("deploy/web", None).unwrap();
        assert_eq!(
            (t.group.as_str(), t.resource.as_str()),
            ("apps", "deployments")
        );
        assert_eq!((t.name.as_deref(), w), (Some("web"), None));
        let (t, _) = target("nodes", Some("n1")).unwrap();
        assert!(!t.namespaced && t.name.as_deref() == Some("n1"));
        let (t, w) = target("widgets.example.com", None).unwrap();
        assert_eq!(
            (t.group.as_str(), t.resource.as_str()),
            ("example.com", "widgets")
        );
        assert!(w.unwrap().contains("'widgets.example.com'"));
        assert!(target("pods/a", Some("b")).is_err());
    }

    #[test]
    fn answers_print_as_kubectl_prints_them() {
        let yes = SubjectAccessReviewStatus {
            allowed: true,
            ..Default::default()
        };
        assert_eq!(answer_line(&yes), "yes");
        let no = SubjectAccessReviewStatus {
            reason: Some("no relationship found".into()),
            ..Default::default()
        };
        assert_eq!(answer_line(&no), "no - no relationship found");
        let status = SubjectRulesReviewStatus {
            resource_rules: vec![
                ResourceRule {
                    verbs: vec!["get".into()],
                    api_groups: vec![String::new()],
                    resources: vec!["pods".into()],
                    resource_names: vec![],
                },
                ResourceRule {
                    verbs: vec!["list".into()],
                    api_groups: vec![String::new()],
                    resources: vec!["pods".into()],
                    resource_names: vec![],
                },
                ResourceRule {
                    verbs: vec!["create".into()],
                    api_groups: vec!["authorization.k8s.io".into()],
                    resources: vec!["selfsubjectaccessreviews".into()],
                    resource_names: vec![],
                },
            ],
            non_resource_rules: vec![NonResourceRule {
                verbs: vec!["get".into()],
                non_resource_urls: vec!["/version".into()],
            }],
            ..Default::default()
        };
        assert_eq!(
            rules_table(&status, false),
            "Resources                                       Non-Resource URLs   Resource Names   Verbs\n\
             pods                                            []                  []               [get list]\n\
             selfsubjectaccessreviews.authorization.k8s.io   []                  []               [create]\n\
             \x20                                               [/version]          []               [get]\n"
        );
    }
}
