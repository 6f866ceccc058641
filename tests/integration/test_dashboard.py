"""test_dashboard.py — deploy/grafana/cpmgate.json, the Grafana dashboard
for the admin listener's /metrics: it parses, covers connections,
handshakes, decisions by service, the audit log and backend errors, and
every metric its PromQL names is one a running gateway exports (or
Prometheus's own `up` for the scrape job of deploy/prometheus.yml). The
compose `monitoring` profile runs Prometheus scraping the gateway's admin
port and Grafana provisioned with that Prometheus and this dashboard;
promtool, where installed, checks the Prometheus configuration and the
syntax of every query."""
import json
import re
import shutil
import subprocess

import pytest
import yaml

import cg

DEPLOY = cg.REPO / 'deploy'
DASHBOARD = DEPLOY / 'grafana' / 'cpmgate.json'
PROVISIONING = DEPLOY / 'grafana' / 'provisioning'
PROMETHEUS = DEPLOY / 'prometheus.yml'
COMPOSE = DEPLOY / 'docker-compose.yml'

# PromQL words that are not metric names: aggregations, functions are
# followed by "(" and dropped anyway; these are the bare keywords.
KEYWORDS = {'by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'bool',
            'and', 'or', 'unless', 'offset', 'inf', 'nan'}
# Prometheus's own series about a scrape, not the gateway's.
SCRAPE_SERIES = {'up'}


def dashboard():
    return json.loads(DASHBOARD.read_text())


def panels(d):
    for p in d['panels']:
        yield p
        yield from p.get('panels', [])


def queries(d):
    """Every PromQL expression: panel targets and query variables."""
    out = []
    for p in panels(d):
        out += [t['expr'] for t in p.get('targets', [])]
    for v in d['templating']['list']:
        if v['type'] == 'query':
            q = v['query']
            out.append(q['query'] if isinstance(q, dict) else q)
    return out


def metric_names(expr):
    """The metric names an expression selects (label_values(m, l) names m)."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)        # string literals
    e = re.sub(r'\{[^}]*\}', ' ', e)                     # label matchers
    e = re.sub(r'\[[^\]]*\]', ' ', e)                    # ranges
    e = re.sub(r'\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)', ' ', e)
    e = re.sub(r'label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*,[^)]*\)', r'\1', e)
    names = set()
    for m in re.finditer(r'(?<![\w$.])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?', e):
        if m.group(2) or m.group(1).lower() in KEYWORDS:
            continue
        names.add(m.group(1))
    return names


def test_metric_names_are_read_from_promql():
    assert metric_names('sum by (service, decision) (rate(cpmgate_operations_total'
                        '{instance=~"$instance"}[$__rate_interval]))') == \
        {'cpmgate_operations_total'}
    assert metric_names('a_total / clamp_min(b{x="c_d"}, 1e-9) and on(i) up') == \
        {'a_total', 'b', 'up'}
    assert metric_names('label_values(cpmgate_connections_active, instance)') == \
        {'cpmgate_connections_active'}


def test_dashboard_parses_and_covers_the_gateway():
    d = dashboard()
    assert d['uid'] == 'cpmgate' and d['title']
    ids = [p['id'] for p in panels(d)]
    assert len(ids) == len(set(ids)), 'panel ids are unique'
    for p in panels(d):
        if p['type'] == 'row':
            continue
        assert p['targets'], p['title']
        assert p['datasource']['uid'] == '${datasource}', p['title']
        for t in p['targets']:
            assert metric_names(t['expr']), (p['title'], t['expr'])
    used = set().union(*map(metric_names, queries(d)))
    for needed in ('cpmgate_connections_active', 'cpmgate_connections_accepted_total',
                   'cpmgate_tls_handshakes_total', 'cpmgate_operations_total',
                   'cpmgate_audit_commit_seconds', 'cpmgate_audit_queue_depth',
                   'cpmgate_backend_errors_total'):
        assert needed in used, needed
    by_service = [q for q in queries(d) if 'cpmgate_operations_total' in q and 'service' in q]
    assert by_service, 'decisions are shown by service'
    assert 'datasource' in [v['name'] for v in d['templating']['list']]


@pytest.fixture(scope='module')
def exported(module_gateway_factory, pki):
    """The metric names of a running gateway's /metrics (# TYPE lines)."""
    g = module_gateway_factory({
        'gateway': {'workers': '1', 'admin_listen': f'127.0.0.1:{cg.free_port()}'},
        'listener content': cg.tls_listener(pki, 'http', 'down'),
        'upstream down': {'address': f'127.0.0.1:{cg.free_port()}'},
    })
    g.start()
    st, _, body = cg.http_plain(g.admin_addr(), 'GET', '/metrics')
    assert st == 200
    return {ln.split()[2] for ln in body.decode().splitlines() if ln.startswith('# TYPE ')}


def test_every_dashboard_metric_is_exported(exported):
    used = set().union(*map(metric_names, queries(dashboard())))
    missing = used - exported - SCRAPE_SERIES
    assert not missing, f'the dashboard queries metrics the gateway does not export: {missing}'
    # `up` is asked for the job that deploy/prometheus.yml scrapes
    jobs = {j['job_name'] for j in yaml.safe_load(PROMETHEUS.read_text())['scrape_configs']}
    for q in queries(dashboard()):
        for job in re.findall(r'\bup\{[^}]*job="([^"]*)"', q):
            assert job in jobs, q


def test_prometheus_scrapes_the_admin_port():
    conf = yaml.safe_load(PROMETHEUS.read_text())
    [job] = [j for j in conf['scrape_configs'] if j['job_name'] == 'cpmgate']
    assert job.get('metrics_path', '/metrics') == '/metrics'
    targets = [t for sc in job['static_configs'] for t in sc['targets']]
    sample = (DEPLOY / 'cpmgate.conf').read_text()
    port = re.search(r'^admin_listen = [^;\s]*:(\d+)', sample, re.M).group(1)
    assert targets == [f'cpmgate:{port}']


def dashboard_provider_path():
    [prov] = yaml.safe_load((PROVISIONING / 'dashboards' / 'cpmgate.yml').read_text())[
        'providers']
    assert prov['type'] == 'file'
    return prov['options']['path']


def test_grafana_provisioning_names_prometheus_and_the_dashboard():
    [ds] = yaml.safe_load((PROVISIONING / 'datasources' / 'prometheus.yml').read_text())[
        'datasources']
    assert ds['type'] == 'prometheus' and ds['url'] == 'http://prometheus:9090'
    assert ds.get('isDefault') is True
    # the dashboard's data source variable finds it by type
    [var] = [v for v in dashboard()['templating']['list'] if v['name'] == 'datasource']
    assert var['query'] == ds['type']
    assert dashboard_provider_path().startswith('/')


def volume(v):
    """(source, target) of a compose volume in either syntax."""
    if isinstance(v, dict):
        return str(v.get('source')), v['target']
    parts = v.split(':')
    return parts[0], parts[1]


@pytest.mark.skipif(not shutil.which('docker-compose'), reason='docker-compose not installed')
def test_compose_monitoring_profile():
    out = subprocess.run(['docker-compose', '-f', str(COMPOSE), '--profile', 'monitoring',
                          'config'], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    services = yaml.safe_load(out.stdout)['services']
    for name in ('prometheus', 'grafana'):
        assert services[name].get('profiles') == ['monitoring'], name
    for name in ('init', 'cpmgate', 'dovecot', 'nginx'):
        assert not services[name].get('profiles'), f'{name} runs without a profile'
    # Prometheus reaches the gateway on a network they share, never the backends'
    prom_nets = set(services['prometheus']['networks'])
    assert prom_nets & set(services['cpmgate']['networks'])
    assert 'backend' not in prom_nets and 'backend' not in services['grafana']['networks']
    prom_mounts = dict(volume(v) for v in services['prometheus']['volumes'])
    assert prom_mounts.get(str(PROMETHEUS)) == '/etc/prometheus/prometheus.yml'
    assert '--config.file=/etc/prometheus/prometheus.yml' in services['prometheus']['command']
    graf_mounts = dict(volume(v) for v in services['grafana']['volumes'])
    assert graf_mounts.get(str(PROVISIONING)) == '/etc/grafana/provisioning'
    dash_target = graf_mounts.get(str(DASHBOARD))
    assert dash_target, 'the dashboard is mounted into grafana'
    provider_path = dashboard_provider_path()
    assert dash_target.rsplit('/', 1)[0] == provider_path.rstrip('/')
    for name in ('prometheus', 'grafana'):
        for p in services[name]['ports']:
            assert str(p).startswith('127.0.0.1:') or \
                (isinstance(p, dict) and p.get('host_ip') == '127.0.0.1'), (name, p)


@pytest.mark.skipif(not shutil.which('promtool'), reason='promtool (Debian prometheus) not installed')
def test_promtool_checks_config_and_queries(tmp_path):
    out = subprocess.run(['promtool', 'check', 'config', str(PROMETHEUS)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    # Each query as a recording rule, Grafana's variables filled in: promtool
    # parses the PromQL.
    rules = []
    for i, q in enumerate(queries(dashboard())):
        if q.startswith('label_values('):
            continue
        expr = q.replace('$__rate_interval', '5m').replace('$instance', '.*')
        rules.append({'record': f'dashboard:query_{i}', 'expr': expr})
    path = tmp_path / 'rules.yml'
    path.write_text(yaml.safe_dump({'groups': [{'name': 'dashboard', 'rules': rules}]}))
    out = subprocess.run(['promtool', 'check', 'rules', str(path)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
