"""The hostile-input suite: values, files and queries an attacker or an unlucky user
hands the collector, the readers, the report and the CLI. Each case asserts no crash,
no hang, no lost good row and a named warning or a clear error."""
