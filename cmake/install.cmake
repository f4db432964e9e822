# Install rules, package config and CPack (owned by the package work of issue 19).
