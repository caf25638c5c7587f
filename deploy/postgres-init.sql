-- One database and one role per service (docker-compose only; dev passwords).
CREATE ROLE identity LOGIN PASSWORD 'identity-dev';
CREATE DATABASE identity OWNER identity;
CREATE ROLE tracking LOGIN PASSWORD 'tracking-dev';
CREATE DATABASE tracking OWNER tracking;
CREATE ROLE ledger LOGIN PASSWORD 'ledger-dev';
CREATE DATABASE ledger OWNER ledger;
CREATE ROLE redemption LOGIN PASSWORD 'redemption-dev';
CREATE DATABASE redemption OWNER redemption;
